// The privacy page (web/privacy.html) in headless Chromium against real
// nginx (core, gateway, gdpr modules: JWT from the insite_token cookie,
// insite_gdpr_consent), Redis, PostgreSQL and insite-gdpr.  The "Sentiment
// insights" panel's location is gated like nginx.conf.example's
// /api/v1/analyze (insite_gdpr_consent analytics); behind it a small HTTP
// server stands in for insite-analytics and counts what reaches it.
//
//   - first visit: the banner lists every type with its policy version,
//     nothing ticked, "Reject all" as large as "Accept all"; the panel shows
//     the refusal's reason; Accept all -> the panel loads;
//   - withdraw analytics with its switch -> the panel stops loading (no
//     request reaches the backend) and shows consent_required;
//   - a second user's Reject all is recorded as five withdrawals;
//   - download my data: progress, then the archive with the consent history;
//   - delete my account: the confirmation step, then the request's status up
//     to completed.
//
// Needs INSITE_PG_DSN (scripts/test.sh exports it) and build/bin/insite-gdpr.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ROOT, Stack, freePort, launchChromium, requireDeps, sleep } from './lib/stack.mjs';

const DSN = process.env.INSITE_PG_DSN;
const GDPR = path.join(ROOT, 'build/bin/insite-gdpr');
const SECRET = 'privacy-page-secret';
const TAG = `pv${process.pid}${Date.now() % 100000}`;
const TYPES = 'analytics=2026-01,marketing=3,data_sharing=1,cookies=1,profiling=1';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function token(sub) {
  const h = b64({ alg: 'HS256', typ: 'JWT' });
  const p = b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600 });
  return `${h}.${p}.${crypto.createHmac('sha256', SECRET).update(`${h}.${p}`).digest('base64url')}`;
}
function psql(sql) {
  const r = spawnSync('psql', [DSN, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
  return r.stdout.trim();
}

// nginx with the gateway and gdpr modules too, and the two API locations
class PrivacyStack extends Stack {
  nginxConf() {
    const mods = ['ngx_http_insite_module', 'ngx_http_insite_ws_module', 'ngx_http_insite_gateway_module',
      'ngx_http_insite_gdpr_module'].map((m) => path.join(ROOT, 'build/modules', `${m}.so`));
    const base = super.nginxConf()
      .replace(/^load_module .*\n/gm, '')
      .replace(/^daemon off;/m, `${mods.map((m) => `load_module ${m};`).join('\n')}\ndaemon off;`);
    return base.replace(/^ {4}server \{\n/m, `    insite_gdpr_journal ${this.dir}/journal;
    server {
        insite_gateway_jwt_secret "${SECRET}";
        insite_gateway_jwt_cookie insite_token;
        # as nginx.conf.example's /api/v1/analyze: only with the analytics consent
        location /api/v1/analyze/ {
            insite_gateway_jwt on;
            insite_gdpr_consent analytics;
            insite_gdpr_audit on;
            insite_gdpr_data_type analytics;
            proxy_set_header X-User-Id $insite_user_id;
            proxy_pass http://127.0.0.1:${this.analyticsPort};
        }
        location /api/v1/gdpr/ {
            insite_gateway_jwt on;
            proxy_set_header X-User-Id $insite_user_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_pass http://127.0.0.1:${this.gdprPort};
        }
`);
  }
}

let stack, ctx, page, gdpr, backend;
let backendHits = 0;
const pageErrors = [];

async function startGdpr() {
  const d = stack.dir;
  const map = JSON.parse(fs.readFileSync(path.join(ROOT, 'workers/gdpr/datamap.json'), 'utf8'));
  map.postgresql = map.postgresql.filter((t) => t.database !== 'backend');
  map.retention = (map.retention || []).filter((t) => t.database !== 'backend');
  delete map.databases.backend;
  delete map.kafka;
  fs.writeFileSync(path.join(d, 'map.json'), JSON.stringify(map));
  fs.writeFileSync(path.join(d, 'psn.key'), crypto.randomBytes(32));
  spawnSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', path.join(d, 'sign.pem')]);
  const log = fs.openSync(path.join(d, 'gdpr.log'), 'a');
  gdpr = spawn(GDPR, [], {
    stdio: ['ignore', log, log],
    env: { ...process.env, INSITE_PG_DSN: DSN, INSITE_PG_MIGRATIONS_DIR: path.join(ROOT, 'workers/migrations'),
      INSITE_REDIS_PORT: String(stack.redisPort), INSITE_GDPR_HTTP_PORT: String(stack.gdprPort),
      INSITE_GDPR_SYNC_INTERVAL: '100ms', INSITE_GDPR_CONSENT_TYPES: TYPES,
      INSITE_GDPR_DATA_MAP: path.join(d, 'map.json'), INSITE_GDPR_PSEUDONYM_KEY: path.join(d, 'psn.key'),
      INSITE_GDPR_SIGNING_KEY: path.join(d, 'sign.pem'), INSITE_KAFKA_SPOOL_DIR: path.join(d, 'spool') },
  });
  const end = Date.now() + 20000;
  while (Date.now() < end) {
    try { if ((await fetch(`http://127.0.0.1:${stack.gdprPort}/healthz`)).status < 500) return; } catch (_) { /* not yet */ }
    if (gdpr.exitCode !== null) break;
    await sleep(100);
  }
  throw new Error(`insite-gdpr did not start: ${fs.readFileSync(path.join(d, 'gdpr.log'), 'utf8')}`);
}

async function openAs(user) {
  await ctx.clearCookies();
  const url = new URL(stack.base);
  await ctx.addCookies([{ name: 'insite_token', value: token(user), domain: url.hostname, path: '/' }]);
  page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${stack.base}/privacy.html`);
}

const insights = () => page.evaluate(() => ({
  state: document.getElementById('insights').dataset.state,
  text: document.getElementById('insights').textContent,
}));

describe('privacy page', { skip: !DSN && 'INSITE_PG_DSN not set (scripts/test.sh)' }, () => {
  before(async () => {
    const playwright = requireDeps();
    if (!fs.existsSync(GDPR)) throw new Error(`${GDPR} missing (make workers)`);
    stack = new PrivacyStack();
    stack.analyticsPort = await freePort();
    stack.gdprPort = await freePort();
    backend = http.createServer((req, res) => {
      backendHits++;
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ scores: { compound: 0.6249, pos: 0.4, neu: 0.6, neg: 0 } }));
      });
    });
    await new Promise((r) => backend.listen(stack.analyticsPort, '127.0.0.1', r));
    await stack.start();
    await startGdpr();
    ctx = await launchChromium(playwright, stack.dir);
  });
  after(async () => {
    if (ctx) await ctx.close().catch(() => {});
    if (gdpr && gdpr.exitCode === null) gdpr.kill('SIGTERM');
    if (backend) backend.close();
    if (stack) await stack.stop();
  });

  it('first visit: the banner, granular with policy versions; reject as easy as accept', async () => {
    await openAs(`${TAG}-alice`);
    await page.waitForSelector('#banner:not([hidden]) #banner-types li');
    const rows = await page.$$eval('#banner-types li', (ls) => ls.map((l) => ({
      type: l.dataset.type, text: l.textContent, checked: l.querySelector('input').checked })));
    assert.deepEqual(rows.map((r) => r.type), ['analytics', 'marketing', 'data_sharing', 'cookies', 'profiling']);
    assert.match(rows[0].text, /policy 2026-01/);
    assert.match(rows[1].text, /policy 3/);
    assert.ok(rows.every((r) => !r.checked), 'nothing pre-ticked');
    const [acc, rej] = await Promise.all(['#accept-all', '#reject-all'].map((s) => page.locator(s).boundingBox()));
    assert.ok(Math.abs(acc.width - rej.width) < 1 && Math.abs(acc.height - rej.height) < 1,
      `reject (${rej.width}x${rej.height}) is as large as accept (${acc.width}x${acc.height})`);
    // no consent yet: the gated panel shows why it is empty
    await page.waitForFunction(() => document.getElementById('insights').dataset.state === 'refused');
    assert.match((await insights()).text, /analytics.*consent_required/);
    assert.equal(backendHits, 0, 'nothing reached the analytics backend');
  });

  it('Accept all: recorded, banner gone, the gated panel loads', async () => {
    await page.click('#accept-all');
    await page.waitForFunction(() => document.getElementById('banner').hidden);
    await page.waitForFunction(() => document.getElementById('insights').dataset.state === 'loaded', null,
      { timeout: 15000 });
    assert.match((await insights()).text, /Sentiment: 0\.625/);
    assert.equal(psql(`SELECT count(*) FROM user_consent_events WHERE user_id = '${TAG}-alice' AND granted`), '5');
    const switches = await page.$$eval('#consents input[role=switch]', (b) => b.map((x) => x.checked));
    assert.deepEqual(switches, [true, true, true, true, true]);
  });

  it('withdraw analytics: the panel stops loading and shows the reason', async () => {
    await page.click('#consents li[data-type=analytics] input');
    await page.waitForFunction(() => document.getElementById('insights').dataset.state === 'refused', null,
      { timeout: 15000 });
    const hits = backendHits;
    const shown = await insights();
    assert.match(shown.text, /needs your consent for analytics \(consent_required\)/);
    // it keeps trying (every 5 s) and keeps being refused at the edge
    await page.evaluate(() => { document.getElementById('insights').dataset.state = 'idle'; });
    await page.waitForFunction(() => document.getElementById('insights').dataset.state === 'refused', null,
      { timeout: 15000 });
    assert.equal(backendHits, hits, 'no request reached the backend after the withdrawal');
    assert.equal(psql(`SELECT granted FROM user_consents WHERE user_id = '${TAG}-alice' AND consent_type = 'analytics'`), 'f');
    // decided: no banner on the next visit
    await page.reload();
    await page.waitForSelector('#consents li');
    assert.equal(await page.evaluate(() => document.getElementById('banner').hidden), true);
  });

  it("another user's Reject all: five withdrawals", async () => {
    const first = page;
    await openAs(`${TAG}-bob`);
    await page.waitForSelector('#banner:not([hidden]) #banner-types li');
    await page.click('#reject-all');
    await page.waitForFunction(() => document.getElementById('banner').hidden);
    assert.equal(psql(`SELECT count(*) FROM user_consent_events WHERE user_id = '${TAG}-bob' AND NOT granted`), '5');
    await page.close();
    page = first;
    await openAs(`${TAG}-alice`);
    await page.waitForSelector('#consents li');
  });

  it('download my data: progress, then the archive', async () => {
    const download = page.waitForEvent('download', { timeout: 30000 });
    await page.click('#export-start');
    assert.equal(await page.evaluate(() => document.getElementById('export-progress').hidden), false);
    const dl = await download;
    const archive = JSON.parse(fs.readFileSync(await dl.path(), 'utf8'));
    assert.equal(archive.schema, 'insite-gdpr-export/1');
    assert.equal(archive.user_id, `${TAG}-alice`);
    assert.equal(archive.postgresql.consent_events.length, 6, '5 grants and the withdrawal');
    assert.match(await page.textContent('#export-status'), /^Ready: \d+ records\.$/);
    assert.equal(await page.evaluate(() => document.getElementById('export-progress').value), 3);
  });

  it('delete my account: confirmation, then the status up to completed', async () => {
    await page.click('#delete-start');
    assert.equal(await page.isDisabled('#delete-go'), true, 'nothing to click before confirming');
    await page.fill('#delete-word', 'delete');
    assert.equal(await page.isDisabled('#delete-go'), true, 'a wrong word does not enable it');
    await page.fill('#delete-word', 'DELETE_MY_DATA');
    await page.click('#delete-go');
    await page.waitForFunction(() => /: (pending|processing|completed)/.test(document.getElementById('delete-status').textContent));
    await page.waitForFunction(() => document.getElementById('delete-status').dataset.status === 'completed', null,
      { timeout: 60000 });
    assert.match(await page.textContent('#delete-status'), /completed — \d+ of \d+ places erased/);
    assert.equal(psql(`SELECT count(*) FROM user_consent_events WHERE user_id = '${TAG}-alice'`), '0');
    assert.deepEqual(pageErrors, []);
  });
});
