// The chart's history from the bars API and the seam with live bars:
// headless Chromium against real nginx + Redis (tests/browser/lib/stack.mjs).
// The bars API is answered by the test (page.route) from the same minute
// bars it publishes on stock_bars:SEAM, so the test knows every minute:
//   - the API holds minutes 0..49 (the collector's PostgreSQL), the channel
//     history minutes 45..59 (published before the page opens), then 60..62
//     arrive live: the 1m chart shows minutes 0..62, each once, no gap;
//   - 5m: buckets each once, the current bucket = exactly its minutes
//     (no minute counted twice at the seam);
//   - 1h: buckets start at the session open (:30 UTC for New York, as the
//     API's), and the current one is built from its minutes on that phase.
//
//   node --test tests/browser/history.test.mjs   (after scripts/web-deps.sh, make modules)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Stack, launchChromium, requireDeps } from './lib/stack.mjs';

// hour-aligned, 3 h ago: inside the span the page asks for (the last day)
const T0 = Math.floor(Date.now() / 3600000) * 3600 - 3 * 3600;
const minute = (i) => {
  const o = 100 + i, c = 100 + i + ((i % 3) - 1) * 0.5;
  return { time: T0 + i * 60, open: o, high: Math.max(o, c) + 1, low: Math.min(o, c) - 1, close: c,
           volume: 1000 + i };
};
const STORED = 50;                // minutes 0..49 are in the API

// phase: 1h buckets start at :30 (09:30 New York in EST and EDT)
function aggregate(mins, width, phase = 0) {
  const out = new Map();
  for (const m of mins) {
    const k = m.time - ((((m.time - phase) % width) + width) % width);
    const b = out.get(k);
    if (!b) out.set(k, { ...m, time: k });
    else { b.high = Math.max(b.high, m.high); b.low = Math.min(b.low, m.low); b.close = m.close; b.volume += m.volume; }
  }
  return [...out.values()];
}

function apiAnswer(url) {
  const u = new URL(url);
  const iv = u.searchParams.get('interval') || '1m';
  const from = Number(u.searchParams.get('from')), to = Number(u.searchParams.get('to'));
  const width = { '1m': 60, '5m': 300, '1h': 3600 }[iv];
  const mins = [];
  for (let i = 0; i < STORED; i++) if (minute(i).time >= from && minute(i).time < to) mins.push(minute(i));
  const bars = aggregate(mins, width, iv === '1h' ? 1800 : 0).map((b) => ({ ...b, time: new Date(b.time * 1000).toISOString() }));
  return { symbol: 'SEAM', interval: iv, timezone: 'America/New_York', bars, next_cursor: null };
}

let stack, ctx, page;
const pageErrors = [];

async function publishMinute(i) {
  const m = minute(i);
  await stack.publish('stock_bars:SEAM', 'stock_bar', { symbol: 'SEAM', interval: '1m',
    time: new Date(m.time * 1000).toISOString(), open: m.open, high: m.high, low: m.low,
    close: m.close, volume: m.volume, source: 'replay' });
}

async function chartTimes(want) {
  await page.waitForFunction((n) => window.__insiteChart && window.__insiteChart.source.startsWith('history')
    && window.__insiteChart.bars.length === n, want, { timeout: 15000 }).catch(() => {});
  return page.evaluate(() => window.__insiteChart);
}

describe('chart history + live bars', () => {
  before(async () => {
    const playwright = requireDeps();
    stack = await new Stack().start();
    ctx = await launchChromium(playwright, stack.dir);
  });
  after(async () => {
    if (ctx) await ctx.close().catch(() => {});
    if (stack) await stack.stop();
  });

  it('1m: every minute once across the seam', async () => {
    for (let i = 45; i < 60; i++) await publishMinute(i);      // the channel's history
    page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.route('**/api/v1/stocks/**', (route) => route.fulfill({
      status: 200, contentType: 'application/json', body: JSON.stringify(apiAnswer(route.request().url())),
    }));
    await page.goto(`${stack.base}/?symbols=SEAM&record=1&history=1`);
    let c = await chartTimes(60);
    assert.deepEqual(c.bars.map((b) => b.time), Array.from({ length: 60 }, (_, i) => T0 + i * 60),
      'history 0..49 and live 45..59: minutes 0..59, each once');
    for (let i = 60; i < 63; i++) await publishMinute(i);
    c = await chartTimes(63);
    assert.deepEqual(c.bars.map((b) => b.time), Array.from({ length: 63 }, (_, i) => T0 + i * 60),
      'live minutes appended after the seam');
    assert.deepEqual(c.bars.map((b) => b.close), Array.from({ length: 63 }, (_, i) => minute(i).close));
  });

  it('5m: buckets once, the current bucket from its minutes', async () => {
    await page.click('#intervals button[data-iv="5m"]');
    const c = await chartTimes(13);
    const want = aggregate(Array.from({ length: 63 }, (_, i) => minute(i)), 300);
    assert.deepEqual(c.bars.map((b) => b.time), want.map((b) => b.time), 'every 5m bucket once');
    for (const k of ['open', 'high', 'low', 'close']) {
      assert.deepEqual(c.bars.map((b) => b[k]), want.map((b) => b[k]), `5m ${k}`);
    }
    assert.deepEqual(pageErrors, [], 'no page errors');
  });

  it('1h: buckets from the session open, the current bucket from its minutes', async () => {
    await page.click('#intervals button[data-iv="1h"]');
    const want = aggregate(Array.from({ length: 63 }, (_, i) => minute(i)), 3600, 1800);
    const c = await chartTimes(want.length);
    assert.deepEqual(c.bars.map((b) => b.time), want.map((b) => b.time), 'every 1h bucket once, at :30');
    for (const k of ['open', 'high', 'low', 'close']) {
      assert.deepEqual(c.bars.map((b) => b[k]), want.map((b) => b[k]), `1h ${k}`);
    }
    assert.deepEqual(pageErrors, [], 'no page errors');
  });
});
