// The receiving end of bench/notify/latency.sh: one WebSocket connection to
// nginx's /ws (ngx_insite_ws) subscribed to alert:u1 .. alert:u<USERS>; for
// every `alert` frame, the time it arrived minus the alert's `fired_at`
// (the market_time of the update that fired it, which the generator sets to
// the wall clock when it hands the update to Kafka).  Same machine, same
// clock.  Writes READY once every channel is subscribed, stops after
// EXPECTED alerts or IDLE seconds without one, prints a JSON summary.
//
// With ARRIVALS, also writes a line "<alert id> <arrival, wall ms>" per alert
// there (bench/notify/stages.py joins it with the worker's fire times).
//
//   node --experimental-websocket ws_client.mjs URL USERS EXPECTED READY [IDLE=20] [ARRIVALS]
import { writeFileSync } from 'node:fs';

const [url, users, expected, ready, idleArg, arrivalsFile] = process.argv.slice(2);
const arrivals = [];
const nUsers = Number(users), nExpected = Number(expected), idle = Number(idleArg || 20) * 1000;
const wallMs = () => performance.timeOrigin + performance.now();
const lat = [];
const seen = new Set();
const perSecond = new Map();
let dups = 0, pending = 0, lastAt = Date.now(), firstRecv = 0, lastRecv = 0;

const ws = new WebSocket(url);
ws.onopen = () => {
  for (let i = 1; i <= nUsers; i += 500) {
    const channels = [];
    for (let k = i; k < i + 500 && k <= nUsers; k++) channels.push(`alert:u${k}`);
    pending++;
    ws.send(JSON.stringify({ op: 'subscribe', channels, id: `s${i}` }));
  }
};
ws.onmessage = (ev) => {
  const now = wallMs();
  const m = JSON.parse(ev.data);
  if (m.type === 'subscribed') {
    if (--pending === 0) writeFileSync(ready, 'ready\n');
    return;
  }
  if (m.type === 'error') {
    console.error('ws error frame', ev.data);
    process.exit(1);
  }
  if (m.type !== 'alert') return;
  lastAt = Date.now();
  if (seen.has(m.data.event_id)) {
    dups++;
    return;
  }
  seen.add(m.data.event_id);
  lat.push(now - Date.parse(m.data.fired_at));
  if (arrivalsFile) arrivals.push(`${m.data.id} ${now.toFixed(3)}`);
  if (!firstRecv) firstRecv = now;
  lastRecv = now;
  const sec = Math.floor(now / 1000);
  perSecond.set(sec, (perSecond.get(sec) || 0) + 1);
  if (seen.size >= nExpected) finish();
};
ws.onerror = (e) => {
  console.error('ws error', e.message || e);
  process.exit(1);
};
setInterval(() => { if (Date.now() - lastAt > idle) finish(); }, 500);

function finish() {
  if (arrivalsFile) writeFileSync(arrivalsFile, arrivals.join('\n') + '\n');
  lat.sort((a, b) => a - b);
  const q = (p) => (lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] * 10) / 10 : null);
  // full seconds only (the first and last are partial)
  const secs = [...perSecond.keys()].sort().slice(1, -1).map((s) => perSecond.get(s));
  console.log(JSON.stringify({
    alerts: seen.size, expected: nExpected, duplicates: dups,
    p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), max_ms: q(1),
    recv_window_s: Math.round((lastRecv - firstRecv) / 100) / 10,
    recv_per_s_min: secs.length ? Math.min(...secs) : null,
    recv_per_s_max: secs.length ? Math.max(...secs) : null,
  }));
  process.exit(0);
}
