// permessage-deflate in Debian's headless Chromium against real nginx +
// Redis (tests/browser/lib/stack.mjs): Chromium offers the extension, nginx
// (insite_ws_deflate on) accepts it, and a page gets exactly the messages a
// page on a plain connection gets: the same text, in the same order, small
// and large (compressed) alike. Chromium compresses what it sends too, so
// the subscribe itself goes in compressed.
//
//   node --test tests/browser/deflate.test.mjs   (after scripts/web-deps.sh, make modules)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, launchChromium, requireDeps } from './lib/stack.mjs';

let stack, ctx, page;
const pageErrors = [];

describe('permessage-deflate in headless Chromium', () => {
  before(async () => {
    const playwright = requireDeps();
    stack = await new Stack().start();
    ctx = await launchChromium(playwright, stack.dir);
    page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(`${stack.base}/clients/js/insite-client.js`);
  });

  after(async () => {
    if (ctx) await ctx.close().catch(() => {});
    if (stack) {
      if (process.exitCode) console.error(stack.errorLog().split('\n').slice(-30).join('\n'));
      await stack.stop();
    }
  });

  it('negotiates it and sees the same messages as a plain connection', async () => {
    const channel = 'stock_updates:DEFLATE';
    // two sockets in the page: /ws-deflate and /ws; both subscribe
    const opened = await page.evaluate(async ({ base, channel }) => {
      const open = (path) => new Promise((resolve, reject) => {
        const ws = new WebSocket(base.replace('http', 'ws') + path);
        const got = [];
        ws.onmessage = (e) => got.push(e.data);
        ws.onerror = () => reject(new Error(`${path}: error`));
        ws.onopen = () => {
          ws.send(JSON.stringify({ op: 'subscribe', channels: [channel], id: path }));
          resolve({ ws, got });
        };
      });
      window.__z = await open('/ws-deflate');
      window.__p = await open('/ws');
      const subscribed = (s) => new Promise((resolve) => {
        const t = setInterval(() => {
          if (s.got.some((m) => JSON.parse(m).type === 'subscribed')) { clearInterval(t); resolve(); }
        }, 10);
      });
      await Promise.all([subscribed(window.__z), subscribed(window.__p)]);
      return { deflate: window.__z.ws.extensions, plain: window.__p.ws.extensions };
    }, { base: stack.base, channel });
    assert.match(opened.deflate, /^permessage-deflate/, 'Chromium negotiated permessage-deflate');
    assert.equal(opened.plain, '', 'the plain location offers nothing');

    const N = 30;
    for (let i = 1; i <= N; i++) {
      // every third message is small (under insite_ws_deflate_min_size: sent plain)
      const data = i % 3 === 0 ? { i } : { i, quotes: Array.from({ length: 30 }, (_, k) => ({ sym: `S${k}`, px: 100 + k + i / 100, note: 'é✓' })) };
      await stack.publish(channel, 'stock_update', data);
    }
    await page.waitForFunction((n) => window.__z.got.length >= n + 1 && window.__p.got.length >= n + 1, N,
      { timeout: 15000 });
    const { z, p } = await page.evaluate(() => ({ z: window.__z.got, p: window.__p.got }));
    const msgs = (a) => a.filter((m) => JSON.parse(m).type === 'stock_update');
    assert.equal(msgs(p).length, N, 'the plain page got every message');
    assert.deepEqual(msgs(z), msgs(p), 'the deflate page got exactly the same text, in the same order');
    assert.deepEqual(msgs(z).map((m) => JSON.parse(m).seq), Array.from({ length: N }, (_, k) => k + 1));
    assert.doesNotMatch(stack.errorLog(), /\[(alert|crit|emerg)\]|closing with 10/, 'nothing closed, nothing alarming');
    assert.deepEqual(pageErrors, []);
  });
});
