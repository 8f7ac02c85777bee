// clients/js/insite-client.js against a scripted fake WebSocket (no browser,
// no server): backoff, resume with since, once-in-order delivery, resets,
// errors, pings.   node --test tests/browser/client.test.mjs
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InsiteClient, backoffDelay, conflatedFirst } from '../../clients/js/insite-client.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class FakeWS {
  static sockets = [];
  static refuse = 0;     // the next N sockets close without opening
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWS.sockets.push(this);
    setTimeout(() => {
      if (this.readyState !== 0) return;
      if (FakeWS.refuse > 0) { FakeWS.refuse--; this.readyState = 3; this.onclose && this.onclose({ code: 1006, reason: '' }); return; }
      this.readyState = 1;
      this.onopen && this.onopen();
    }, 1);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose && this.onclose({ code, reason }), 0);
  }
  // server side
  recv(obj) { this.onmessage && this.onmessage({ data: JSON.stringify(obj) }); }
  serverClose(code, reason) { this.readyState = 3; this.onclose && this.onclose({ code, reason }); }
  lastOp(op) { return [...this.sent].reverse().find((m) => m.op === op); }
}

const fast = { WebSocket: FakeWS, backoffInitialMs: 10, backoffMaxMs: 80, random: () => 0 };
const msg = (channel, seq, data = {}) => ({ type: 'stock_update', channel, seq, ts: 'x', data });

async function until(fn, ms = 1000) {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(2);
  }
}

describe('insite-client', () => {
  it('backoff: 1 s, 2 s, 4 s … 30 s, jitter only shortens', () => {
    const d = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, {}, () => 0));
    assert.deepEqual(d, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert.equal(backoffDelay(1, {}, () => 0.999999), 700);
    for (let n = 1; n < 12; n++) {
      const v = backoffDelay(n, {}, Math.random);
      assert.ok(v >= 0.7 * Math.min(30000, 1000 * 2 ** (n - 1)) && v <= 30000);
    }
  });

  it('subscribes, resumes with since {seq, epoch}, delivers each seq once in order', async () => {
    FakeWS.sockets = [];
    const c = new InsiteClient('ws://x/ws', fast);
    const got = [];
    const states = [];
    c.on('message', (m) => got.push(m.seq));
    c.on('state', (s) => { if (states[states.length - 1] !== s.status) states.push(s.status); });
    const p = c.subscribe(['stock_updates:AAPL']);
    c.connect();
    await until(() => FakeWS.sockets[0]?.lastOp('subscribe'));
    const s1 = FakeWS.sockets[0];
    const req = s1.lastOp('subscribe');
    assert.deepEqual(req.channels, ['stock_updates:AAPL']);
    assert.equal(req.since, undefined, 'first subscribe: live only');
    s1.recv({ type: 'subscribed', id: req.id, channels: { 'stock_updates:AAPL': { seq: 40, epoch: 'e1' } } });
    assert.deepEqual(await p, { 'stock_updates:AAPL': { seq: 40, epoch: 'e1' } });
    s1.recv(msg('stock_updates:AAPL', 41));
    s1.recv(msg('stock_updates:AAPL', 42));
    s1.recv(msg('stock_updates:AAPL', 42));       // duplicate: dropped
    s1.serverClose(1001, 'server restarting, reconnect');
    assert.equal(c.state.status, 'reconnecting');
    assert.equal(c.state.retryInMs, 10);
    await until(() => FakeWS.sockets[1]?.lastOp('subscribe'));
    const s2 = FakeWS.sockets[1];
    const r2 = s2.lastOp('subscribe');
    assert.deepEqual(r2.since, { 'stock_updates:AAPL': { seq: 42, epoch: 'e1' } });
    s2.recv({ type: 'subscribed', id: r2.id, channels: { 'stock_updates:AAPL': { seq: 45, epoch: 'e1' } } });
    for (const n of [43, 44, 45, 46]) s2.recv(msg('stock_updates:AAPL', n));
    assert.deepEqual(got, [41, 42, 43, 44, 45, 46]);
    assert.equal(c.stats.duplicates, 1);
    assert.equal(c.stats.reconnects, 1);
    assert.deepEqual(c.state.resumed && [c.state.resumed.messages, c.state.resumed.done], [3, true]);
    assert.deepEqual(states.slice(0, 3), ['connecting', 'connected', 'reconnecting']);
    c.close();
    assert.equal(c.state.status, 'closed');
  });

  it('backs off while the server is unreachable, then resets the attempt count', async () => {
    FakeWS.sockets = [];
    FakeWS.refuse = 3;
    const c = new InsiteClient('ws://x/ws', fast);
    const delays = [];
    c.on('state', (s) => { if (s.status === 'reconnecting' && s.retryInMs) delays.push(s.retryInMs); });
    c.subscribe(['a']);
    c.connect();
    await until(() => FakeWS.sockets[3]?.lastOp('subscribe'), 2000);
    assert.deepEqual(delays, [10, 20, 40]);
    const s = FakeWS.sockets[3];
    s.recv({ type: 'subscribed', id: s.lastOp('subscribe').id, channels: { a: { seq: 0, epoch: 'e' } } });
    s.serverClose(1006, '');
    assert.equal(c.state.retryInMs, 10, 'a successful subscribe starts the backoff over');
    c.close();
  });

  it('a conflated message stands for first_seq..seq: delivered once, no gap', async () => {
    FakeWS.sockets = [];
    const c = new InsiteClient('ws://x/ws', fast);
    const got = [];
    const gaps = [];
    c.on('message', (m) => got.push(m.seq));
    c.on('gap', (g) => gaps.push(g));
    c.subscribe(['stock_updates:X']);
    c.connect();
    await until(() => FakeWS.sockets[0]?.lastOp('subscribe'));
    const s1 = FakeWS.sockets[0];
    s1.recv({ type: 'subscribed', id: s1.lastOp('subscribe').id,
              channels: { 'stock_updates:X': { seq: 5, epoch: 'e' } } });
    s1.recv(msg('stock_updates:X', 6));
    s1.recv({ ...msg('stock_updates:X', 11), conflated: 5, first_seq: 7 });
    s1.recv(msg('stock_updates:X', 12));
    assert.deepEqual(got, [6, 11, 12]);
    assert.deepEqual(gaps, []);
    assert.equal(c.stats.conflated, 4, 'seq 7..10 were merged into 11');
    // a conflated message that does not start right after the last one is a gap
    s1.recv({ ...msg('stock_updates:X', 20), conflated: 3, first_seq: 18 });
    assert.deepEqual(gaps, [{ channel: 'stock_updates:X', expected: 13, got: 18 }]);
    // inconsistent fields: not a conflated message, its seq is checked as is
    assert.equal(conflatedFirst({ seq: 9, conflated: 5, first_seq: 7 }), 9);
    assert.equal(conflatedFirst({ seq: 9, conflated: 3, first_seq: 7 }), 7);
    c.close();
  });

  it('a gap makes it resume instead of delivering out of order', async () => {
    FakeWS.sockets = [];
    const c = new InsiteClient('ws://x/ws', fast);
    const got = [];
    const gaps = [];
    c.on('message', (m) => got.push(m.seq));
    c.on('gap', (g) => gaps.push(g));
    c.subscribe(['a']);
    c.connect();
    await until(() => FakeWS.sockets[0]?.lastOp('subscribe'));
    const s1 = FakeWS.sockets[0];
    s1.recv({ type: 'subscribed', id: s1.lastOp('subscribe').id, channels: { a: { seq: 5, epoch: 'e' } } });
    s1.recv(msg('a', 6));
    s1.recv(msg('a', 8));
    assert.deepEqual(gaps, [{ channel: 'a', expected: 7, got: 8 }]);
    await until(() => FakeWS.sockets[1]?.lastOp('subscribe'));
    assert.deepEqual(FakeWS.sockets[1].lastOp('subscribe').since, { a: { seq: 6, epoch: 'e' } });
    const s2 = FakeWS.sockets[1];
    s2.recv({ type: 'subscribed', id: s2.lastOp('subscribe').id, channels: { a: { seq: 8, epoch: 'e' } } });
    s2.recv(msg('a', 7));
    s2.recv(msg('a', 8));
    assert.deepEqual(got, [6, 7, 8]);
    c.close();
  });

  it('reset and error frames are events; unavailable subscribes are retried', async () => {
    FakeWS.sockets = [];
    const c = new InsiteClient('ws://x/ws', fast);
    const resets = [];
    const errors = [];
    const got = [];
    c.on('reset', (r) => resets.push(r));
    c.on('error', (e) => errors.push(e.code));
    c.on('message', (m) => got.push(m.seq));
    const sub = c.subscribe(['a', 'b'], { since: 0 });
    c.connect();
    await until(() => FakeWS.sockets[0]?.lastOp('subscribe'));
    const s = FakeWS.sockets[0];
    const r1 = s.lastOp('subscribe');
    assert.deepEqual(r1.since, { a: 0, b: 0 });
    s.recv({ type: 'error', id: r1.id, code: 'unavailable', message: 'redis down' });
    await until(() => s.sent.filter((m) => m.op === 'subscribe').length === 2);
    const r2 = s.lastOp('subscribe');
    s.recv({ type: 'subscribed', id: r2.id, channels: { a: { seq: 2000, epoch: 'e' }, b: { seq: 1, epoch: 'e' } } });
    await sub;
    s.recv({ type: 'reset', channel: 'a', epoch: 'e', first_seq: 1001 });
    s.recv(msg('a', 1001));
    s.recv({ type: 'reset', channel: 'b', epoch: 'e2', first_seq: 1 });
    assert.equal(resets[0].lost, 1000);
    assert.equal(resets[0].initial, true, 'a since-0 history start is expected');
    assert.equal(resets[1].lost, null, 'another epoch: unknown loss');
    assert.deepEqual(got, [1001]);
    s.recv({ type: 'error', code: 'bad_json', message: 'x' });
    assert.deepEqual(errors, ['unavailable', 'bad_json']);
    await assert.rejects(c.subscribe(['bad channel!']), /bad channel name/);
    c.close();
  });

  it('pings when idle and drops a connection that does not answer', async () => {
    FakeWS.sockets = [];
    const c = new InsiteClient('ws://x/ws', { ...fast, pingIdleMs: 20, pongTimeoutMs: 30 });
    c.subscribe(['a']);
    c.connect();
    await until(() => FakeWS.sockets[0]?.lastOp('subscribe'));
    const s = FakeWS.sockets[0];
    s.recv({ type: 'subscribed', id: s.lastOp('subscribe').id, channels: { a: { seq: 0, epoch: 'e' } } });
    await until(() => s.lastOp('ping'));
    s.recv({ type: 'pong', id: s.lastOp('ping').id });
    await until(() => s.sent.filter((m) => m.op === 'ping').length === 2);
    // no answer now: a new connection, resuming
    await until(() => FakeWS.sockets[1]?.lastOp('subscribe'), 1000);
    assert.equal(c.state.lastClose.code, 4002);
    assert.deepEqual(FakeWS.sockets[1].lastOp('subscribe').since, { a: { seq: 0, epoch: 'e' } });
    c.close();
  });
});
