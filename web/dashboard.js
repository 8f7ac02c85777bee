// InsiteChart Edge dashboard: watchlist + chart, fed by the WebSocket client.
// Fields read from each message are listed in docs/dashboard.md.
//
// URL parameters:
//   symbols=AAPL,MSFT,…   the watchlist when not signed in (default: the
//                         collector's default list); signed in, the rows are
//                         the user's saved watchlist (GET /api/v1/watchlists)
//   ws=ws://host/ws       WebSocket URL (default: /ws on this host)
//   stale=60              seconds without an update before a row is marked stale
//   record=1              keep every delivered seq in window.__insiteSeen (tests)
//   watchlist=1           ask for the saved watchlist even without a readable
//                         insite_token cookie (an HttpOnly one)
//   history=1             load the chart's history from /api/v1/stocks/{sym}/bars
//                         (needs a token: on by itself when a readable
//                         insite_token cookie is set); off: WebSocket only
import { InsiteClient } from '/clients/js/insite-client.js';

const params = new URLSearchParams(location.search);
const DEFAULT_SYMBOLS = ['AAPL', 'MSFT', 'GOOGL', 'AMZN', 'TSLA'];
const SYMBOL_RE = /^[A-Za-z0-9_.-]{1,32}$/;
const STALE_MS = Math.max(1, Number(params.get('stale')) || 60) * 1000;
const MAX_CANDLES = 2000;

let symbols = (params.get('symbols') || '').split(',').map((s) => s.trim().toUpperCase())
  .filter((s) => SYMBOL_RE.test(s));
if (!symbols.length) symbols = DEFAULT_SYMBOLS.slice();
symbols = [...new Set(symbols)];

const $ = (id) => document.getElementById(id);
const rowsEl = $('rows');

// ---- state --------------------------------------------------------------
// per symbol: {quote, quoteAt, sentiment, row: {tr, cells…}, bars: Map(time→bar),
//              ticks: Map(time→candle), dirty, flash}
const book = new Map();
const dirty = new Set();
let selected = null;
let chartType = 'candles';
let chartDirty = false;
let connStatus = 'connecting';

const record = params.get('record') === '1';
const seen = {};            // channel -> [seq…]  (record=1 only)
window.__insiteSeen = seen;

// ---- formatting ---------------------------------------------------------
const fmtPrice = (v) => (typeof v === 'number' && isFinite(v) ? v.toFixed(2) : '—');
const fmtSigned = (v, suffix = '') =>
  (typeof v === 'number' && isFinite(v) ? `${v > 0 ? '+' : ''}${v.toFixed(2)}${suffix}` : '—');
function fmtVolume(v) {
  if (typeof v !== 'number' || !isFinite(v)) return '—';
  if (v >= 1e9) return `${(v / 1e9).toFixed(2)}B`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}K`;
  return String(Math.round(v));
}
function fmtAge(ms) {
  if (ms < 1500) return 'now';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  return `${Math.round(m / 60)}h ago`;
}
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
const cls = (v) => (typeof v !== 'number' || v === 0 ? 'flat' : v > 0 ? 'up' : 'down');
const num = (v) => (typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN);

// seconds since the epoch from ISO text, epoch seconds or epoch milliseconds
function toEpochSeconds(t) {
  if (typeof t === 'number' && isFinite(t)) return Math.floor(t > 1e12 ? t / 1000 : t);
  if (typeof t === 'string' && t) {
    if (/^\d+(\.\d+)?$/.test(t)) return toEpochSeconds(Number(t));
    const ms = Date.parse(t);
    if (!isNaN(ms)) return Math.floor(ms / 1000);
  }
  return null;
}

// ---- watchlist rows -----------------------------------------------------
function entry(sym) {
  let e = book.get(sym);
  if (!e) {
    e = { sym, quote: null, quoteAt: 0, sentiment: null, bars: new Map(), ticks: new Map(),
          flash: 0, stale: false, row: null };
    book.set(sym, e);
  }
  return e;
}

function makeRow(sym) {
  const e = entry(sym);
  const tr = document.createElement('tr');
  tr.dataset.symbol = sym;
  tr.className = 'empty';
  tr.innerHTML = `<td class="sym"><button class="rm" type="button" title="Remove ${sym} from the watchlist"`
    + ` aria-label="Remove ${sym}">×</button>${sym}<span class="src"></span><button class="alert-me" type="button"`
    + ` title="Alert me when ${sym}…" aria-label="Alert me when ${sym}…">🔔</button></td><td class="num price">—</td>`
    + '<td class="num change">—</td><td class="num pct">—</td><td class="num vol">—</td>'
    + '<td class="num sent">—</td><td class="age">—</td>';
  const td = tr.children;
  e.row = { tr, src: td[0].querySelector('.src'), price: td[1], change: td[2], pct: td[3], vol: td[4],
            sent: td[5], age: td[6] };
  tr.addEventListener('click', () => select(sym));
  td[0].querySelector('.rm').addEventListener('click', (ev) => {
    ev.stopPropagation();
    removeSymbol(sym);
  });
  // "alert me when…": web/alerts.js opens its rule editor on this symbol and price
  td[0].querySelector('.alert-me').addEventListener('click', (ev) => {
    ev.stopPropagation();
    const price = e.quote ? num(e.quote.price) : NaN;
    document.dispatchEvent(new CustomEvent('insite:alert-me', { detail: { symbol: sym, price } }));
  });
  rowsEl.appendChild(tr);
  return e;
}

function renderRow(e) {
  const r = e.row;
  const q = e.quote;
  if (q) {
    r.tr.classList.remove('empty');
    const p = num(q.price);
    r.price.textContent = fmtPrice(p);
    r.price.dataset.price = String(q.price);
    r.price.className = `num price ${e.flash % 2 ? 'f1' : 'f2'}`;
    const ch = num(q.change);
    const pct = num(q.change_percent);
    r.change.textContent = fmtSigned(ch);
    r.change.className = `num change ${cls(ch)}`;
    r.pct.textContent = fmtSigned(pct, '%');
    r.pct.className = `num pct ${cls(pct)}`;
    r.vol.textContent = fmtVolume(num(q.volume));
    const src = q.source && q.source !== 'yahoo' ? q.source : '';
    if (r.src.textContent !== src) r.src.textContent = src;
    r.tr.title = `${e.sym}${q.currency ? ` (${q.currency})` : ''} · market time ${q.market_time || '?'}`
      + ` · source ${q.source || 'unknown'} · seq ${e.seq}`;
  }
  const s = e.sentiment;
  if (s) {
    const c = num(s.compound);
    const w = Math.min(50, Math.abs(c) * 50);
    r.sent.innerHTML = `<span class="bar"><i style="${c >= 0 ? 'left:50%' : `left:${50 - w}%`};`
      + `width:${w}%;background:var(--${c >= 0 ? 'up' : 'down'})"></i></span>${fmtSigned(c)}`;
    r.sent.className = `num sent ${cls(c)}`;
    r.sent.title = `compound ${c}; positive ${s.positive ?? '?'}, negative ${s.negative ?? '?'}, `
      + `neutral ${s.neutral ?? '?'}; ${s.mentions ?? '?'} mentions${s.window ? ` over ${s.window}` : ''}`;
  }
}

function renderAges() {
  const now = Date.now();
  const down = connStatus !== 'connected';
  for (const e of book.values()) {
    if (!e.row) continue;
    const last = Math.max(e.quoteAt, e.sentimentAt || 0);
    e.row.age.textContent = last ? fmtAge(now - last) : '—';
    const stale = down || !e.quoteAt || now - e.quoteAt > STALE_MS;
    if (stale !== e.stale) {
      e.stale = stale;
      e.row.tr.classList.toggle('stale', stale);
    }
  }
}

// ---- feed source --------------------------------------------------------
const FEED_TEXT = {
  yahoo: ['feed-live', 'Feed: Yahoo Finance (live quotes)'],
  simulated: ['feed-simulated', 'Feed: SIMULATED prices — not real market data'],
  replay: ['feed-replay', 'Feed: REPLAY of recorded data — not live'],
};
let feedKey = '';
function renderFeed() {
  const counts = new Map();
  for (const e of book.values()) {
    if (e.quote) counts.set(e.quote.source || 'unknown', (counts.get(e.quote.source || 'unknown') || 0) + 1);
  }
  let c;
  let t;
  if (!counts.size) {
    [c, t] = ['feed-unknown', 'Feed: waiting for data…'];
  } else if (counts.size === 1) {
    const src = [...counts.keys()][0];
    [c, t] = FEED_TEXT[src] || ['feed-mixed', `Feed: ${src}`];
  } else {
    [c, t] = ['feed-mixed', `Feed: mixed — ${[...counts].map(([k, n]) => `${k} ×${n}`).join(', ')}`];
  }
  const key = `${c}|${t}`;
  if (key === feedKey) return;
  feedKey = key;
  const el = $('feed');
  el.className = `feed ${c}`;
  el.textContent = t;
  el.dataset.source = counts.size === 1 ? [...counts.keys()][0] : counts.size ? 'mixed' : '';
}

// ---- chart --------------------------------------------------------------
let chart = null;
let candleSeries = null;
let lineSeries = null;
let shownKey = '';          // symbol|type|source of what the series hold
let shownLast = null;       // last time shown

function initChart() {
  const LWC = window.LightweightCharts;
  if (!LWC) {
    $('chart-empty').textContent = 'Chart library missing: run scripts/web-deps.sh';
    return;
  }
  chart = LWC.createChart($('chart'), {
    autoSize: true,
    layout: { background: { color: 'transparent' }, textColor: '#9aa7b8', attributionLogo: false },
    grid: { vertLines: { color: '#1e2833' }, horzLines: { color: '#1e2833' } },
    rightPriceScale: { borderColor: '#243040' },
    timeScale: { borderColor: '#243040', timeVisible: true, secondsVisible: false },
    crosshair: { mode: 0 },
  });
  candleSeries = chart.addSeries(LWC.CandlestickSeries, {
    upColor: '#26a69a', downColor: '#ef5350', borderVisible: false,
    wickUpColor: '#26a69a', wickDownColor: '#ef5350',
  });
  lineSeries = chart.addSeries(LWC.LineSeries, { color: '#4f9cf9', lineWidth: 2, visible: false });
  // scrolled to the left edge: the page before the oldest loaded
  chart.timeScale().subscribeVisibleLogicalRangeChange((r) => {
    if (r && r.from < 10 && hist && hist.sym === selected) loadOlder();
  });
}

// the bars to show: stock_bars when the symbol has any, else 1-minute
// candles built from stock_updates ticks
function chartData(e) {
  if (e.bars.size) return { source: 'bars', map: e.bars };
  return { source: 'ticks', map: e.ticks };
}

// ---- history from the bars API (docs/stocks.md) ---------------------------
// hist = {sym, iv, tz, bars: Map(bucket→bar) of closed buckets (< curStart),
//         curStart, minutes: Map(minute→bar) of the current bucket, oldest,
//         done, loading}.  The current bucket is rebuilt from its minutes:
// those the API had plus the live stock_bars, keyed by minute, so the seam
// between history and live bars has neither a gap nor a double count.
const IV_SECONDS = { '1m': 60, '5m': 300, '1h': 3600, '1d': 86400 };
const IV_SPAN = { '1m': 86400, '5m': 5 * 86400, '1h': 60 * 86400, '1d': 366 * 86400 };
const HISTORY = params.get('history') === '1' || /(?:^|;\s*)insite_token=/.test(document.cookie);
let barInterval = '1m';
let hist = null;

// phase: a bucket start the API gave (intraday buckets are congruent to it:
// 1h bars start at the session open, 09:30 New York = :30 UTC all year)
function bucketOf(t, iv, tz, phase = 0) {
  if (iv !== '1d') {
    const w = IV_SECONDS[iv];
    return t - ((((t - phase) % w) + w) % w);
  }
  // local midnight of the exchange's day (off by the DST hour only on
  // the two switch days between midnight and the switch)
  const p = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone: tz, hourCycle: 'h23', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date(t * 1000)).map((x) => [x.type, Number(x.value)]));
  return t - (p.hour * 3600 + p.minute * 60 + p.second);
}

function apiBar(b) {
  return { time: toEpochSeconds(b.time), open: b.open, high: b.high, low: b.low, close: b.close,
           volume: b.volume };
}

async function fetchBars(sym, iv, from, to) {
  const out = [];
  let url = `/api/v1/stocks/${encodeURIComponent(sym)}/bars?interval=${iv}&from=${from}&to=${to}&limit=5000`;
  let tz = 'America/New_York';
  for (let pages = 0; pages < 50; pages++) {
    const r = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (!r.ok) throw new Error(`bars: HTTP ${r.status}`);
    const d = await r.json();
    tz = d.timezone || tz;
    for (const b of d.bars) out.push(apiBar(b));
    if (!d.next_cursor) break;
    url = `/api/v1/stocks/${encodeURIComponent(sym)}/bars?cursor=${encodeURIComponent(d.next_cursor)}&limit=5000`;
  }
  return { bars: out, tz };
}

async function loadHistory(sym, iv) {
  const now = Math.floor(Date.now() / 1000);
  const h = { sym, iv, tz: 'America/New_York', bars: new Map(), minutes: new Map(),
              curStart: null, oldest: now - IV_SPAN[iv], done: false, loading: true };
  hist = h;
  try {
    const { bars, tz } = await fetchBars(sym, iv, now - IV_SPAN[iv], now + 60);
    h.tz = tz;
    if (!bars.length) throw new Error('no bars');
    h.curStart = bars[bars.length - 1].time;
    for (const b of bars) if (b.time < h.curStart) h.bars.set(b.time, b);
    const cur = await fetchBars(sym, '1m', h.curStart, now + 60);
    for (const b of cur.bars) h.minutes.set(b.time, b);
  } catch (err) {
    // no API (or not signed in): the chart shows what the WebSocket brings
    if (hist === h) hist = null;
    chartDirty = true;
    return;
  }
  h.loading = false;
  if (hist === h) chartDirty = true;
}

async function loadOlder() {
  const h = hist;
  if (!h || h.loading || h.done) return;
  h.loading = true;
  const to = h.oldest, from = to - IV_SPAN[h.iv];
  try {
    const { bars } = await fetchBars(h.sym, h.iv, Math.max(0, from), to);
    for (const b of bars) if (!h.bars.has(b.time)) h.bars.set(b.time, b);
    h.oldest = from;
    if (!bars.length) h.done = true;
    const sorted = [...h.bars.entries()].sort((a, b) => a[0] - b[0]);
    h.bars = new Map(sorted);
  } catch (err) {
    h.done = true;
  }
  h.loading = false;
  if (hist === h) { shownKey = ''; chartDirty = true; }
}

// history + the current bucket from its minutes (API and live)
function histData(e) {
  const h = hist;
  const live = new Map(h.minutes);
  for (const [t, b] of e.bars) if (t >= h.curStart) live.set(t, b);
  const cur = new Map();
  for (const t of [...live.keys()].sort((a, b) => a - b)) {
    const m = live.get(t);
    const k = bucketOf(t, h.iv, h.tz, h.curStart);
    const c = cur.get(k);
    if (!c) cur.set(k, { time: k, open: m.open, high: m.high, low: m.low, close: m.close });
    else { c.high = Math.max(c.high, m.high); c.low = Math.min(c.low, m.low); c.close = m.close; }
  }
  const map = new Map(h.bars);
  for (const [k, b] of cur) if (!map.has(k) || k >= h.curStart) map.set(k, b);
  return { source: `history ${h.iv}`, map: new Map([...map.entries()].sort((a, b) => a[0] - b[0])) };
}

function renderChart() {
  chartDirty = false;
  if (!chart || !selected) return;
  const e = book.get(selected);
  const useHist = hist && hist.sym === selected && !hist.loading && hist.curStart !== null;
  const { source, map } = useHist ? histData(e) : chartData(e);
  $('chart-empty').hidden = map.size > 0;
  $('chart-meta').textContent = map.size
    ? `${source === 'bars' ? '1-min bars (stock_bars)' : source === 'ticks' ? '1-min candles from live quotes' : `${hist.iv} bars (history + live)`} · ${plural(map.size, 'bar')}`
    : '';
  const key = `${selected}|${chartType}|${source}`;
  const times = [...map.keys()];
  if (record) window.__insiteChart = { source, bars: [...map.values()].map((b) => ({ ...b })) };
  const last = times.length ? times[times.length - 1] : null;
  const toLine = (b) => ({ time: b.time, value: b.close });
  const series = chartType === 'line' ? lineSeries : candleSeries;
  if (key !== shownKey || last === null || (shownLast !== null && last < shownLast) || map.__resort) {
    // full refresh: symbol, type or data source changed
    const data = [...map.values()].sort((a, b) => a.time - b.time);
    map.__resort = false;
    candleSeries.applyOptions({ visible: chartType === 'candles' });
    lineSeries.applyOptions({ visible: chartType === 'line' });
    candleSeries.setData(chartType === 'candles' ? data : []);
    lineSeries.setData(chartType === 'line' ? data.map(toLine) : []);
    if (key.split('|')[0] !== shownKey.split('|')[0]) chart.timeScale().fitContent();
    shownKey = key;
    shownLast = data.length ? data[data.length - 1].time : null;
    return;
  }
  // incremental: the last bar (and any new ones since)
  for (const t of times.slice(-3)) {
    if (t < shownLast) continue;
    const b = map.get(t);
    series.update(chartType === 'line' ? toLine(b) : b);
  }
  shownLast = last;
}

function putBar(map, bar) {
  const had = map.size ? [...map.keys()].pop() : null;
  if (had !== null && bar.time < had && !map.has(bar.time)) map.__resort = true;
  map.set(bar.time, bar);
  if (map.__resort) {
    const sorted = [...map.entries()].sort((a, b) => a[0] - b[0]);
    map.clear();
    for (const [k, v] of sorted) map.set(k, v);
  }
  while (map.size > MAX_CANDLES) map.delete(map.keys().next().value);
}

function select(sym) {
  if (selected === sym) return;
  const prev = selected;
  selected = sym;
  for (const e of book.values()) e.row && e.row.tr.classList.toggle('selected', e.sym === sym);
  $('chart-title').textContent = sym;
  // bars of the selected symbol only (the channel limit per connection is
  // shared with the watchlist); since 0 = the history the server keeps
  if (prev) client.unsubscribe([`stock_bars:${prev}`]);
  client.subscribe([`stock_bars:${sym}`], { since: 0 }).catch(() => {});
  if (HISTORY) loadHistory(sym, barInterval);
  const u = new URL(location.href);
  chartDirty = true;
  if (u.searchParams.get('selected') !== sym) {
    u.searchParams.set('selected', sym);
    history.replaceState(null, '', u);
  }
}

// ---- messages -----------------------------------------------------------
function onQuote(sym, d, m) {
  const e = entry(sym);
  e.quote = d;
  e.quoteAt = Date.now();
  e.seq = m.seq;
  e.flash++;
  dirty.add(sym);
  const price = num(d.price);
  const t = toEpochSeconds(d.market_time) ?? toEpochSeconds(m.ts) ?? Math.floor(Date.now() / 1000);
  if (isFinite(price)) {
    const minute = t - (t % 60);
    const c = e.ticks.get(minute);
    if (c) {
      c.high = Math.max(c.high, price);
      c.low = Math.min(c.low, price);
      c.close = price;
    } else {
      putBar(e.ticks, { time: minute, open: price, high: price, low: price, close: price });
    }
    if (sym === selected && !e.bars.size) chartDirty = true;
  }
}

function onBar(sym, d) {
  const e = entry(sym);
  const t = toEpochSeconds(d.t ?? d.time ?? d.timestamp ?? d.start);
  const o = num(d.open ?? d.o);
  const h = num(d.high ?? d.h);
  const l = num(d.low ?? d.l);
  const c = num(d.close ?? d.c);
  if (t === null || ![o, h, l, c].every(isFinite)) return;
  putBar(e.bars, { time: t, open: o, high: h, low: l, close: c });
  if (sym === selected) chartDirty = true;
}

function onSentiment(sym, d) {
  const e = entry(sym);
  if (!isFinite(num(d.compound))) return;
  e.sentiment = d;
  e.sentimentAt = Date.now();
  dirty.add(sym);
}

function onMessage(m) {
  if (record) (seen[m.channel] || (seen[m.channel] = [])).push(m.seq);
  const i = m.channel.indexOf(':');
  const kind = m.channel.slice(0, i);
  const d = m.data && typeof m.data === 'object' ? m.data : {};
  const sym = (typeof d.symbol === 'string' && d.symbol) || m.channel.slice(i + 1);
  if (!book.has(sym) || !book.get(sym).row) return;
  if (kind === 'stock_updates') onQuote(sym, d, m);
  else if (kind === 'stock_bars') onBar(sym, d);
  else if (kind === 'sentiment_updates') onSentiment(sym, d);
}

// ---- notices and connection status --------------------------------------
const noticesEl = $('notices');
function notice(text, kind = 'warn') {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = `${new Date().toLocaleTimeString()} — ${text}`;
  noticesEl.prepend(li);
  while (noticesEl.children.length > 4) noticesEl.lastChild.remove();
  setTimeout(() => li.remove(), 60000);
}

function renderConn() {
  const s = client.state;
  connStatus = s.status;
  const el = $('conn');
  let text;
  if (s.status === 'connected') {
    text = 'Connected';
    if (s.resumed) {
      text += s.resumed.done ? ` · resumed, ${s.resumed.messages} missed message${s.resumed.messages === 1 ? '' : 's'} replayed`
                             : ` · resuming… ${s.resumed.messages} replayed`;
    }
  } else if (s.status === 'reconnecting') {
    const left = s.retryAt ? Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000)) : 0;
    text = left > 0 ? `Reconnecting in ${left}s (attempt ${s.attempt})` : 'Reconnecting…';
  } else if (s.status === 'closed') {
    text = 'Disconnected';
  } else {
    text = 'Connecting…';
  }
  if (el.dataset.status !== s.status) {
    el.className = `conn conn-${s.status}`;
    el.dataset.status = s.status;
  }
  const t = $('conn-text');
  if (t.textContent !== text) t.textContent = text;
  el.title = s.lastClose ? `last close: ${s.lastClose.code} ${s.lastClose.reason || ''}`.trim() : '';
}

// ---- wiring -------------------------------------------------------------
const wsUrl = params.get('ws') || '/ws';
const client = new InsiteClient(wsUrl);
window.__insite = { client, book, seen };

client.on('message', onMessage);
client.on('state', renderConn);
client.on('reset', (r) => {
  if (r.initial) return;   // a first subscribe with since 0: history just starts later
  notice(r.lost === null
    ? `${r.channel}: the server lost this channel's history (new epoch); continuing from #${r.firstSeq}`
    : `${r.channel}: ${r.lost} message${r.lost === 1 ? '' : 's'} were no longer kept by the server and are missing`);
});
client.on('error', (e) => {
  if (e.code === 'unavailable') notice('Server cannot reach Redis right now; retrying…');
  else notice(`${e.code}: ${e.message || ''}${e.channels ? ` (${e.channels.length} channels)` : ''}`, 'err');
});
client.on('gap', (g) => notice(`${g.channel}: gap (${g.expected}…${g.got - 1}); resuming`));

function addSymbols(list) {
  const fresh = list.filter((s) => !book.has(s) || !book.get(s).row);
  for (const s of fresh) makeRow(s);
  const channels = [];
  for (const s of fresh) channels.push(`stock_updates:${s}`, `sentiment_updates:${s}`);
  // last: 1 fills each row with the latest quote and sentiment at once
  if (channels.length) client.subscribe(channels, { last: 1 }).catch(() => {});
  return fresh;
}

// ---- the saved watchlist (GET/PUT /api/v1/watchlists, docs/stocks.md) --
// Signed in (a readable insite_token cookie, as for the history, or
// ?watchlist=1 when the cookie is HttpOnly), the rows are the user's first
// saved list, and adding or removing a row saves it: one PUT at a time, in
// order, the user's other lists sent back as they were.  Not signed in, or
// the API answers 401/404: ?symbols= as before, kept in the URL, nothing
// saved.  (Not asking without a sign of a token keeps the console free of
// failed requests on pages served without the API.)
const SIGNED_IN = params.get('watchlist') === '1' || /(?:^|;\s*)insite_token=/.test(document.cookie);
const saved = { signedIn: false, lists: [], queue: Promise.resolve(), puts: 0 };
window.__insiteWatchlist = saved;

async function loadSavedWatchlist() {
  if (!SIGNED_IN) return null;
  try {
    const r = await fetch('/api/v1/watchlists', { credentials: 'same-origin',
                                                   headers: { Accept: 'application/json' } });
    if (!r.ok) return null;
    const d = await r.json();
    if (!Array.isArray(d.watchlists)) return null;
    saved.signedIn = true;
    saved.lists = d.watchlists.map((l) => ({ name: l.name, symbols: l.symbols }));
    return saved.lists.length ? saved.lists[0].symbols.filter((x) => SYMBOL_RE.test(x)) : [];
  } catch (_) {
    return null;
  }
}

function renderWatchlistState(text) {
  const el = $('watchlist-state');
  if (el) el.textContent = text;
}

function saveWatchlist() {
  if (!saved.signedIn) {
    const u = new URL(location.href);
    u.searchParams.set('symbols', symbols.join(','));
    history.replaceState(null, '', u);
    return;
  }
  const first = { name: saved.lists.length ? saved.lists[0].name : 'Watchlist', symbols: symbols.slice() };
  saved.lists = [first, ...saved.lists.slice(1)];
  const body = JSON.stringify({ watchlists: saved.lists });
  renderWatchlistState('saving…');
  saved.queue = saved.queue.then(async () => {
    const r = await fetch('/api/v1/watchlists', {
      method: 'PUT', credentials: 'same-origin', body,
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    });
    const d = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(d.message || `HTTP ${r.status}`);
    saved.puts++;
    renderWatchlistState(`saved as “${first.name}”`);
  }).catch((e) => {
    renderWatchlistState('not saved');
    notice(`watchlist not saved: ${e.message}`, 'err');
  });
}

function removeSymbol(sym) {
  const e = book.get(sym);
  if (!e || !e.row) return;
  e.row.tr.remove();
  e.row = null;
  book.delete(sym);
  dirty.delete(sym);
  client.unsubscribe([`stock_updates:${sym}`, `sentiment_updates:${sym}`]);
  symbols = symbols.filter((x) => x !== sym);
  saveWatchlist();
  if (selected === sym && symbols.length) select(symbols[0]);
}

$('add-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('add-symbol');
  const sym = input.value.trim().toUpperCase();
  input.value = '';
  if (!SYMBOL_RE.test(sym)) return;
  if (addSymbols([sym]).length) {
    symbols.push(sym);
    saveWatchlist();
  }
  select(sym);
});

for (const [id, type] of [['btn-candles', 'candles'], ['btn-line', 'line']]) {
  $(id).addEventListener('click', () => {
    chartType = type;
    $('btn-candles').classList.toggle('on', type === 'candles');
    $('btn-line').classList.toggle('on', type === 'line');
    chartDirty = true;
  });
}

for (const btn of document.querySelectorAll('#intervals button')) {
  btn.addEventListener('click', () => {
    barInterval = btn.dataset.iv;
    for (const b of document.querySelectorAll('#intervals button')) b.classList.toggle('on', b === btn);
    shownKey = '';
    if (selected && HISTORY) loadHistory(selected, barInterval);
    chartDirty = true;
  });
}

// one DOM pass per frame, whatever the message rate
function frame() {
  if (dirty.size) {
    for (const sym of dirty) {
      const e = book.get(sym);
      if (e && e.row) renderRow(e);
    }
    dirty.clear();
    renderFeed();
  }
  if (chartDirty) renderChart();
  requestAnimationFrame(frame);
}

initChart();
{
  const mine = await loadSavedWatchlist();
  if (mine && mine.length) symbols = [...new Set(mine)];
  if (mine) renderWatchlistState(mine.length ? `saved as “${saved.lists[0].name}”` : 'not saved yet');
}
addSymbols(symbols);
const wanted = (params.get('selected') || '').toUpperCase();
select(symbols.includes(wanted) ? wanted : symbols[0]);
client.connect();
requestAnimationFrame(frame);
setInterval(() => {
  renderAges();
  renderConn();
  const st = client.stats;
  $('stats').textContent = `${plural(symbols.length, 'symbol')} · ${plural(st.delivered, 'message')} · ${plural(st.reconnects, 'reconnect')}`
    + (st.replayed ? ` · ${st.replayed} replayed` : '') + (st.resets ? ` · ${st.resets} resets` : '');
}, 1000);
renderAges();
