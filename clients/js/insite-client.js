// InsiteChart Edge WebSocket client: a plain ES module, no dependencies.
//
//   import { InsiteClient } from '/clients/js/insite-client.js';
//   const client = new InsiteClient('ws://127.0.0.1:8080/ws');
//   client.on('message', (m) => console.log(m.channel, m.seq, m.data));
//   client.on('state', (s) => console.log(s.status));
//   client.subscribe(['stock_updates:AAPL', 'sentiment_updates:AAPL']);
//   client.connect();
//
// Promises it keeps (protocol: docs/ws-protocol.md; API: docs/dashboard.md):
// - reconnects by itself with exponential backoff, 1 s, 2 s, 4s … 30 s at
//   most, with jitter;
// - resubscribes every channel with `since` = {seq, epoch} of the last
//   message it delivered, so the application sees every message once, in
//   order, per channel (duplicates are dropped; a gap makes it reconnect and
//   resume instead of delivering out of order);
// - a conflated message ("latest value wins" channels, insite_ws_conflate)
//   stands for seq first_seq..seq: it is delivered once, as the newest, and
//   counted in stats.conflated;
// - `reset` (history exceeded, or Redis lost the channel) and `error` frames
//   are events, never silent;
// - an app-level ping when nothing has been received for a while (browsers
//   cannot send ping frames), and a connection that does not answer is
//   dropped and resumed;
// - connection state for the UI: connecting / connected / reconnecting (with
//   the time of the next attempt) / closed, and how many messages the last
//   resume replayed.

export const DEFAULT_OPTIONS = Object.freeze({
  backoffInitialMs: 1000,   // first retry after ~1 s
  backoffMaxMs: 30000,      // never wait more than 30 s
  backoffFactor: 2,
  jitter: 0.3,              // a delay is drawn from [d·(1-jitter), d]
  pingIdleMs: 20000,        // send {"op":"ping"} after this long without a frame
  pongTimeoutMs: 10000,     // no frame at all this long after a ping: reconnect
  connectTimeoutMs: 10000,  // the socket must open within this
  subscribeChunk: 50,       // channels per subscribe request
  maxGapResyncs: 5,         // gap → reconnect, at most this often in a row
});

// The first seq a message stands for: first_seq of a well-formed conflated
// message ({"conflated":N,"first_seq":F,"seq":S} with S - F + 1 === N),
// otherwise its own seq.
export function conflatedFirst(m) {
  const n = m.conflated, f = m.first_seq;
  if (Number.isInteger(n) && Number.isInteger(f) && n >= 2 && f >= 1
      && m.seq - f + 1 === n) {
    return f;
  }
  return m.seq;
}

// Delay before reconnect attempt `attempt` (1, 2, 3, …).
export function backoffDelay(attempt, opts = DEFAULT_OPTIONS, random = Math.random) {
  const o = { ...DEFAULT_OPTIONS, ...opts };
  const n = Math.max(1, attempt | 0);
  const base = Math.min(o.backoffMaxMs, o.backoffInitialMs * Math.pow(o.backoffFactor, n - 1));
  const j = Math.min(1, Math.max(0, o.jitter));
  return Math.round(base * (1 - j * random()));
}

// The channel-name rule of ngx_insite_ws/insite_channel.c (the one home of
// the channel contract); tests/browser/channel-names.test.mjs checks both
// against the same table, tests/fixtures/channel_names.json.
const CHANNEL_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

export function channelNameValid(name) {
  return typeof name === 'string' && CHANNEL_RE.test(name);
}

export class InsiteClient {
  // url: ws:// or wss:// URL, or a path ('/ws') resolved against location.
  // options: DEFAULT_OPTIONS keys, plus WebSocket (constructor, for Node or
  // tests), random (for jitter), now (clock).
  constructor(url, options = {}) {
    this.url = resolveUrl(url);
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this._WS = options.WebSocket || globalThis.WebSocket;
    this._random = options.random || Math.random;
    this._now = options.now || (() => Date.now());
    this._handlers = new Map();
    this._desired = new Set();        // channels the app wants
    this._pos = new Map();            // channel -> {seq, epoch|null}
    this._initial = new Set();        // channels whose first subscribe is pending
    this._lastN = new Map();          // channel -> N for its first subscribe ("last")
    this._pending = new Map();        // request id -> {channels, resolve, reject}
    this._nextId = 1;
    this._ws = null;
    this._attempt = 0;
    this._timers = {};
    this._stopped = true;
    this._gapResyncs = 0;
    this._replay = null;              // {target: Map(channel -> seq), count}
    this.stats = { received: 0, delivered: 0, duplicates: 0, gaps: 0, resets: 0,
                   errors: 0, reconnects: 0, replayed: 0, pings: 0, conflated: 0 };
    this.state = { status: 'idle', attempt: 0, retryAt: null, retryInMs: null,
                   connectedAt: null, lastClose: null, resumed: null, url: this.url };
    this._onOnline = () => { if (this.state.status === 'reconnecting') this._reconnectNow(); };
    this._onVisible = () => {
      if (typeof document !== 'undefined' && document.visibilityState === 'visible') this._ping();
    };
  }

  // ---- events -----------------------------------------------------------
  // 'message'  {type, channel, seq, ts, data}  every message once, in order
  // 'state'    this.state, after every change
  // 'subscribed' {channels: {ch: {seq, epoch}}, resumed: bool}
  // 'reset'    {channel, epoch, firstSeq, previous: {seq, epoch}|null, lost, initial}
  // 'error'    {code, message, id, channels?}  error frames and client-side trouble
  // 'gap'      {channel, expected, got}  (the client reconnects to repair it)
  // 'pong'     {id, rttMs}
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const set = this._handlers.get(event);
    if (set) set.delete(fn);
  }

  _emit(event, arg) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(arg); } catch (e) {
        // an application handler's bug must not break delivery
        if (typeof console !== 'undefined') console.error('insite-client handler', event, e);
      }
    }
  }

  // ---- public API -------------------------------------------------------
  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    if (typeof window !== 'undefined' && window.addEventListener) {
      window.addEventListener('online', this._onOnline);
    }
    if (typeof document !== 'undefined' && document.addEventListener) {
      document.addEventListener('visibilitychange', this._onVisible);
    }
    this._open();
    return this;
  }

  // Stops for good (no reconnect). Positions are kept: connect() resumes.
  close(code = 1000, reason = 'client closing') {
    this._stopped = true;
    this._clearTimers();
    if (typeof window !== 'undefined' && window.removeEventListener) {
      window.removeEventListener('online', this._onOnline);
    }
    if (typeof document !== 'undefined' && document.removeEventListener) {
      document.removeEventListener('visibilitychange', this._onVisible);
    }
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      detach(ws);
      try { ws.close(code, reason); } catch (_) { /* already closed */ }
    }
    this._failPending('closed');
    this._setState({ status: 'closed', retryAt: null, retryInMs: null });
  }

  // Subscribes channels (kept across reconnects). options.since: a seq (0 =
  // everything the server retains) or {seq, epoch}, for channels without a
  // position yet; options.last: N, the last N retained messages first (a
  // snapshot: the latest quote before any live one); without either only
  // live messages follow. Resolves with the server's positions once
  // subscribed; rejects on an error frame.
  subscribe(channels, options = {}) {
    const list = [...new Set([].concat(channels))];
    for (const ch of list) {
      if (!channelNameValid(ch)) return Promise.reject(new Error(`bad channel name: ${ch}`));
    }
    const fresh = list.filter((ch) => !this._desired.has(ch));
    for (const ch of fresh) {
      this._desired.add(ch);
      if (!this._pos.has(ch)) {
        if (options.since !== undefined && options.since !== null) {
          const s = options.since;
          this._pos.set(ch, typeof s === 'object' ? { seq: s.seq | 0, epoch: s.epoch || null }
                                                  : { seq: s | 0, epoch: null });
        }
        this._initial.add(ch);
        if (options.last) this._lastN.set(ch, options.last | 0);
      }
    }
    if (!fresh.length) return Promise.resolve(this.positions(list));
    return this._isOpen() ? this._sendSubscribe(fresh) : this._deferred(fresh);
  }

  // Unsubscribes and forgets the channels' positions.
  unsubscribe(channels) {
    const list = [].concat(channels).filter((ch) => this._desired.has(ch));
    for (const ch of list) {
      this._desired.delete(ch);
      this._pos.delete(ch);
      this._initial.delete(ch);
    }
    if (!list.length || !this._isOpen()) return Promise.resolve(list);
    const id = `u${this._nextId++}`;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { channels: list, resolve, reject, kind: 'unsubscribe' });
      this._send({ op: 'unsubscribe', channels: list, id });
    });
  }

  // {channel: {seq, epoch}} of the last message delivered (or the position
  // the server reported at subscribe time).
  positions(channels) {
    const out = {};
    for (const ch of channels || this._desired) {
      const p = this._pos.get(ch);
      if (p) out[ch] = { seq: p.seq, epoch: p.epoch };
    }
    return out;
  }

  get channels() { return [...this._desired]; }

  // ---- connection -------------------------------------------------------
  _isOpen() { return this._ws && this._ws.readyState === 1 && this._ready; }

  _open() {
    this._clearTimer('retry');
    const first = this.state.status === 'idle' || this.state.status === 'closed';
    this._setState({ status: first ? 'connecting' : 'reconnecting', retryAt: null, retryInMs: null,
                     attempt: this._attempt });
    let ws;
    try {
      ws = new this._WS(this.url);
    } catch (e) {
      this._emit('error', { code: 'connect_failed', message: String(e && e.message || e) });
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._ready = false;
    this._setTimer('connect', this.options.connectTimeoutMs, () => {
      if (this._ws === ws && ws.readyState !== 1) this._drop(ws, 4001, 'connect timeout');
    });
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._clearTimer('connect');
      this._ready = true;
      this._lastRx = this._now();
      const resumed = this._everConnected;
      this._everConnected = true;
      if (resumed) this.stats.reconnects++;
      this._replay = resumed ? { target: new Map(), count: 0, done: false } : null;
      this._setState({ status: 'connected', connectedAt: this._now(), attempt: this._attempt,
                       retryAt: null, retryInMs: null });
      this._armPing();
      const all = [...this._desired];
      if (all.length) this._sendSubscribe(all, resumed).catch(() => { /* reported as error events */ });
    };
    ws.onmessage = (ev) => { if (this._ws === ws) this._onFrame(ev.data); };
    ws.onerror = () => { /* a close event follows */ };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._ready = false;
      this._clearTimer('connect');
      this._clearTimer('ping');
      this._clearTimer('pong');
      const lastClose = { code: ev.code, reason: ev.reason || '', at: this._now() };
      this._setState({ lastClose });
      if (!this._stopped) this._scheduleReconnect();
    };
  }

  // close a socket we gave up on, and reconnect
  _drop(ws, code, reason, immediate = false) {
    detach(ws);
    if (this._ws === ws) { this._ws = null; this._ready = false; }
    try { ws.close(code, reason); } catch (_) { /* CONNECTING sockets may throw */ }
    this._clearTimer('ping');
    this._clearTimer('pong');
    this._setState({ lastClose: { code, reason, at: this._now() } });
    if (this._stopped) return;
    if (immediate) this._reconnectNow();
    else this._scheduleReconnect();
  }

  _scheduleReconnect() {
    this._attempt++;
    const delay = backoffDelay(this._attempt, this.options, this._random);
    const retryAt = this._now() + delay;
    this._setState({ status: 'reconnecting', attempt: this._attempt, retryAt, retryInMs: delay });
    this._setTimer('retry', delay, () => this._open());
  }

  _reconnectNow() {
    this._clearTimer('retry');
    this._open();
  }

  // ---- subscribe --------------------------------------------------------
  _deferred(channels) {
    return new Promise((resolve, reject) => {
      const id = `d${this._nextId++}`;
      this._pending.set(id, { channels, resolve, reject, kind: 'deferred' });
    });
  }

  _sendSubscribe(channels, resumed = false, tries = 0) {
    const chunks = [];
    for (let i = 0; i < channels.length; i += this.options.subscribeChunk) {
      chunks.push(channels.slice(i, i + this.options.subscribeChunk));
    }
    return Promise.all(chunks.map((chunk) => new Promise((resolve, reject) => {
      const id = `s${this._nextId++}`;
      const since = {};
      let last = 0;
      for (const ch of chunk) {
        const p = this._pos.get(ch);
        if (p) since[ch] = p.epoch ? { seq: p.seq, epoch: p.epoch } : p.seq;
        else last = Math.max(last, this._lastN.get(ch) || 0);
      }
      this._pending.set(id, { channels: chunk, resolve, reject, kind: 'subscribe', resumed, tries });
      const req = { op: 'subscribe', channels: chunk, id };
      if (Object.keys(since).length) req.since = since;
      // applies to the channels without a position (the server's rule)
      if (last) req.last = last;
      this._send(req);
    }))).then((parts) => Object.assign({}, ...parts));
  }

  _send(obj) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    try {
      this._ws.send(JSON.stringify(obj));
      return true;
    } catch (_) {
      return false;
    }
  }

  _failPending(why) {
    for (const [id, p] of this._pending) {
      if (p.kind === 'deferred' && why !== 'closed') continue;
      this._pending.delete(id);
      p.reject(Object.assign(new Error(why), { code: why }));
    }
  }

  // ---- frames -----------------------------------------------------------
  _onFrame(text) {
    this._lastRx = this._now();
    this._clearTimer('pong');
    this._armPing();
    let m;
    try { m = JSON.parse(text); } catch (_) {
      this._emit('error', { code: 'bad_frame', message: 'server sent invalid JSON' });
      return;
    }
    if (!m || typeof m !== 'object') return;
    if (typeof m.seq === 'number' && typeof m.channel === 'string') {
      this._onMessage(m);
      return;
    }
    switch (m.type) {
      case 'subscribed': return this._onSubscribed(m);
      case 'unsubscribed': {
        const p = this._pending.get(m.id);
        if (p) { this._pending.delete(m.id); p.resolve(m.channels || []); }
        return;
      }
      case 'reset': return this._onReset(m);
      case 'pong': {
        const rttMs = this._pingSentAt ? this._now() - this._pingSentAt : null;
        this._emit('pong', { id: m.id, rttMs });
        return;
      }
      case 'error': return this._onError(m);
      default:
        // a frame without seq (unknown type): hand it over as is
        this._emit('frame', m);
    }
  }

  _onSubscribed(m) {
    const chans = m.channels || {};
    const p = this._pending.get(m.id);
    for (const [ch, info] of Object.entries(chans)) {
      if (!this._desired.has(ch)) continue;
      const pos = this._pos.get(ch);
      if (!pos) {
        this._pos.set(ch, { seq: info.seq, epoch: info.epoch || null });
      } else if (!pos.epoch && info.epoch) {
        // since was a bare number: it meant the current epoch
        pos.epoch = info.epoch;
      }
      if (this._replay && p && p.resumed) {
        const have = this._pos.get(ch).seq;
        if (info.seq > have) this._replay.target.set(ch, info.seq);
      }
    }
    const resumed = !!(p && p.resumed);
    if (p) {
      this._pending.delete(m.id);
      this._attempt = 0;
      this._gapResyncs = 0;
      p.resolve(this.positions(Object.keys(chans)));
    }
    // promises of subscribe() calls made while disconnected
    for (const [id, d] of this._pending) {
      if (d.kind === 'deferred' && d.channels.every((ch) => this._pos.has(ch))) {
        this._pending.delete(id);
        d.resolve(this.positions(d.channels));
      }
    }
    for (const ch of Object.keys(chans)) this._initial.delete(ch);
    if (resumed) this._updateResumed();
    this._emit('subscribed', { channels: chans, resumed });
  }

  _onReset(m) {
    const ch = m.channel;
    if (!this._desired.has(ch)) return;
    const previous = this._pos.get(ch) || null;
    const firstSeq = m.first_seq | 0;
    let lost = null;   // null: unknown (the epoch changed)
    if (previous && (!previous.epoch || previous.epoch === m.epoch)) {
      lost = Math.max(0, firstSeq - 1 - previous.seq);
    }
    this._pos.set(ch, { seq: firstSeq - 1, epoch: m.epoch || null });
    this.stats.resets++;
    if (this._replay) {
      const t = this._replay.target.get(ch);
      if (t !== undefined && t <= firstSeq - 1) this._replay.target.delete(ch);
    }
    this._emit('reset', { channel: ch, epoch: m.epoch, firstSeq, previous, lost,
                          initial: this._initial.has(ch) || (previous && previous.seq === 0) });
  }

  _onMessage(m) {
    this.stats.received++;
    const ch = m.channel;
    const pos = this._pos.get(ch);
    if (!pos || !this._desired.has(ch)) return;       // unsubscribed meanwhile
    if (m.seq <= pos.seq) { this.stats.duplicates++; return; }
    // a conflated message (insite_ws_conflate) stands for first_seq..seq, of
    // which only the newest is delivered: the seq check applies to first_seq
    const first = conflatedFirst(m);
    if (first > pos.seq + 1) {
      // the server promises no gap; if one shows, resume from our position
      // on a new connection rather than deliver out of order
      this.stats.gaps++;
      this._emit('gap', { channel: ch, expected: pos.seq + 1, got: first });
      if (this._ws && this._gapResyncs < this.options.maxGapResyncs) {
        this._gapResyncs++;
        this._drop(this._ws, 4000, 'gap', this._gapResyncs === 1);
        return;
      }
      this._emit('error', { code: 'gap', channel: ch,
                            message: `seq ${pos.seq + 1}..${first - 1} missing on ${ch}` });
    }
    if (first < m.seq) this.stats.conflated += m.seq - Math.max(first, pos.seq + 1);
    pos.seq = m.seq;
    this.stats.delivered++;
    if (this._replay) {
      const t = this._replay.target.get(ch);
      if (t !== undefined && first <= t) {
        this._replay.count++;
        this.stats.replayed++;
        if (m.seq >= t) this._replay.target.delete(ch);
        this._updateResumed();
      }
    }
    this._emit('message', m);
  }

  _updateResumed() {
    const r = this._replay;
    if (!r) return;
    let waiting = false;   // resumed subscribe requests not answered yet
    for (const p of this._pending.values()) if (p.kind === 'subscribe' && p.resumed) waiting = true;
    const done = r.target.size === 0 && !waiting;
    const resumed = { messages: r.count, done, at: this._now() };
    if (done) this._replay = null;
    this._setState({ resumed });
  }

  _onError(m) {
    this.stats.errors++;
    const p = m.id !== undefined ? this._pending.get(m.id) : undefined;
    const ev = { code: m.code, message: m.message, id: m.id };
    if (p) {
      ev.channels = p.channels;
      this._pending.delete(m.id);
      if (m.code === 'unavailable' && p.kind === 'subscribe') {
        // Redis unreachable for the server: ask again with backoff, keep the
        // caller's promise waiting
        const n = (p.tries || 0) + 1;
        this._setTimer(`resub${m.id}`, backoffDelay(n, this.options, this._random), () => {
          const still = p.channels.filter((ch) => this._desired.has(ch));
          if (!this._isOpen() || !still.length) return;   // a reconnect resubscribes
          this._sendSubscribe(still, p.resumed, n).then(p.resolve, p.reject);
        });
      } else {
        p.reject(Object.assign(new Error(m.message || m.code), { code: m.code }));
      }
    }
    this._emit('error', ev);
  }

  // ---- liveness ---------------------------------------------------------
  _armPing() {
    this._setTimer('ping', this.options.pingIdleMs, () => this._ping());
  }

  _ping() {
    if (!this._isOpen()) return;
    const ws = this._ws;
    this.stats.pings++;
    this._pingSentAt = this._now();
    this._send({ op: 'ping', id: `p${this._nextId++}` });
    if (!this._timers.pong) {
      this._setTimer('pong', this.options.pongTimeoutMs, () => {
        if (this._ws === ws) this._drop(ws, 4002, 'ping timeout', true);
      });
    }
  }

  // ---- helpers ----------------------------------------------------------
  _setState(patch) {
    this.state = { ...this.state, ...patch };
    this._emit('state', this.state);
  }

  _setTimer(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = setTimeout(() => { delete this._timers[name]; fn(); }, ms);
  }

  _clearTimer(name) {
    if (this._timers[name]) { clearTimeout(this._timers[name]); delete this._timers[name]; }
  }

  _clearTimers() {
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
  }
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
}

function resolveUrl(url) {
  if (/^wss?:\/\//.test(url)) return url;
  if (typeof location !== 'undefined') {
    const u = new URL(url || '/ws', location.href);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.toString();
  }
  return url;
}
