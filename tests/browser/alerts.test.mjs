// The dashboard's alerts in headless Chromium against the real pieces:
// Redis, PostgreSQL and the Kafka mock (scripts/services.sh), insite-notify,
// nginx with the core, WebSocket and gateway modules (JWT from the
// insite_token cookie, /api/v1/alerts proxied to the worker, alert:<user>
// private on /ws).  The user signs in through /signin.html#token=… (what
// scripts/run.sh prints), then:
//   a. creates a rule in the editor; a price crossing it is produced to
//      Kafka; the toast shows the text insite-notify rendered; unread = 1;
//   b. the settings page switches the language to Arabic; after a reload the
//      choice is still there (stored by the API); the next alert's toast is
//      Arabic and right to left;
//   c. deleting the rule in the editor removes it from the API's list;
//   d. a watchlist row's "alert me when…" button opens the editor on its
//      symbol and current price; the rule created is in the API for this
//      user and not for another.
//
//   node --test tests/browser/alerts.test.mjs   (after make modules workers, scripts/web-deps.sh)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, freePort, launchChromium, requireDeps, sleep } from './lib/stack.mjs';

const WATCHDOG_MS = 240000;
const watchdog = setTimeout(() => {
  console.error(`alerts browser test: watchdog: over ${WATCHDOG_MS / 1000}s, giving up`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

const ARTIFACTS = process.env.BROWSER_ARTIFACTS || path.join(ROOT, 'build/test-artifacts/browser');
const NGINX = process.env.TEST_NGINX_BINARY || '/usr/sbin/nginx';
const MOD = (m) => path.join(ROOT, 'build/modules', `ngx_http_insite_${m}.so`);
const NOTIFY = process.env.INSITE_NOTIFY_BIN || path.join(ROOT, 'build/bin/insite-notify');
const SECRET = crypto.randomBytes(24).toString('hex');
const USER = `ana${process.pid}`;
const SYM = `ZT${process.pid % 10000}`;

const b64url = (b) => Buffer.from(b).toString('base64url');
function token(sub) {
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify({ sub, iat: now, exp: now + 3600 }))}`;
  return `${body}.${crypto.createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

const procs = [];
process.on('exit', () => { for (const p of procs) { try { process.kill(-p.pid, 'SIGKILL'); } catch (_) { /* gone */ } } });

let dir, env, nginxPort, notifyPort, ctx, page;
const pageErrors = [];

function services(cmd) {
  const r = spawnSync(path.join(ROOT, 'scripts/services.sh'), [cmd], {
    encoding: 'utf8', timeout: 120000,
    env: { ...process.env, INSITE_RUN_DIR: dir, INSITE_KAFKA_TOPICS: 'stock_updates:1 sentiment_updates:1 alerts:1' },
  });
  if (r.status !== 0) throw new Error(`services.sh ${cmd}: ${r.stdout}${r.stderr}`);
}

function readEnv(file) {
  const out = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = line.match(/^([A-Z_]+)=(.*)$/);
    if (m) out[m[1]] = m[2].replace(/^'(.*)'$/, '$1');
  }
  return out;
}

async function waitHttp(url, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if ((await fetch(url)).status < 500) return; } catch (_) { /* not yet */ }
    await sleep(50);
  }
  throw new Error(`${what} did not answer ${url} within ${ms} ms`);
}

function nginxConf() {
  const user = process.getuid && process.getuid() === 0 ? 'user root;' : '';
  return `load_module ${MOD('module')};
load_module ${MOD('ws_module')};
load_module ${MOD('gateway_module')};
daemon off;
master_process on;
worker_processes 2;
${user}
error_log ${dir}/logs/error.log info;
pid ${dir}/logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    types { text/html html; text/css css; application/javascript js mjs; }
    default_type application/octet-stream;
    insite_redis 127.0.0.1:${env.INSITE_REDIS_PORT};
    insite_gateway_jwt_secret "${SECRET}";
    insite_gateway_jwt_cookie insite_token;
    server {
        listen 127.0.0.1:${nginxPort};
        location / { root ${ROOT}/web; index index.html; }
        location /clients/js/ { alias ${ROOT}/clients/js/; }
        location /vendor/ { alias ${ROOT}/build/web/vendor/; }
        location /api/v1/alerts {
            insite_gateway_jwt on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-User-Id $insite_user_id;
            proxy_set_header X-User-Scopes $insite_jwt_claim_scope;
            proxy_pass http://127.0.0.1:${notifyPort};
        }
        location = /ws {
            insite_ws;
            insite_gateway_jwt optional;
            insite_ws_user $insite_user_id;
            insite_ws_private_prefix alert:;
            insite_ws_allowed_origins http://127.0.0.1:${nginxPort};
            insite_ws_max_channels 200;
        }
        location = /pub { allow 127.0.0.1; deny all; insite_ws_publish; }
    }
}
`;
}

function start(cmd, args, extraEnv, log) {
  const out = fs.openSync(path.join(dir, log), 'a');
  const p = spawn(cmd, args, { stdio: ['ignore', out, out], detached: true, env: { ...process.env, ...extraEnv } });
  procs.push(p);
  return p;
}

// a stock_update envelope to Kafka, as the collector produces it
let tick = Date.parse('2026-12-02T10:00:00Z');
function quote(sym, price) {
  tick += 1000;
  const ev = { event_type: 'stock_update', event_id: crypto.randomUUID(), source_service: 'test',
    timestamp: new Date(tick).toISOString(), version: '1.0',
    data: { symbol: sym, price, currency: 'USD', market_time: new Date(tick).toISOString() } };
  const r = spawnSync('kcat', ['-P', '-b', env.INSITE_KAFKA_BOOTSTRAP, '-t', 'stock_updates', '-K', '|'],
    { input: `${sym}|${JSON.stringify(ev)}\n`, encoding: 'utf8', timeout: 20000 });
  if (r.status !== 0) throw new Error(`kcat: ${r.stderr}`);
}

function logs() {
  let s = '';
  for (const f of ['notify.log', 'logs/error.log', 'nginx.log']) {
    try { s += `--- ${f}\n${fs.readFileSync(path.join(dir, f), 'utf8').slice(-4000)}`; } catch (_) { /* none */ }
  }
  return s;
}

describe('alerts on the page', () => {
  before(async () => {
    const playwright = requireDeps();
    for (const m of ['module', 'ws_module', 'gateway_module']) {
      if (!fs.existsSync(MOD(m))) throw new Error(`missing ${MOD(m)} (make modules)`);
    }
    if (!fs.existsSync(NOTIFY)) throw new Error(`missing ${NOTIFY} (make workers)`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'insite-alerts-'));
    fs.mkdirSync(path.join(dir, 'logs'));
    services('start');
    env = readEnv(path.join(dir, 'services.env'));
    notifyPort = await freePort();
    nginxPort = await freePort();
    start(NOTIFY, [], {
      INSITE_PG_DSN: env.INSITE_PG_DSN, INSITE_KAFKA_BOOTSTRAP: env.INSITE_KAFKA_BOOTSTRAP,
      INSITE_REDIS_PORT: env.INSITE_REDIS_PORT, INSITE_NOTIFY_HTTP_PORT: String(notifyPort),
      INSITE_PG_MIGRATIONS_DIR: path.join(ROOT, 'workers/migrations'),
      INSITE_NOTIFY_TEMPLATES_DIR: path.join(ROOT, 'workers/notify/templates'),
      INSITE_KAFKA_SPOOL_DIR: path.join(dir, 'spool'), INSITE_KAFKA_LINGER: '5ms',
      INSITE_NOTIFY_SESSION_TIMEOUT: '6s',
    }, 'notify.log');
    await waitHttp(`http://127.0.0.1:${notifyPort}/healthz`, 60000, 'insite-notify');
    fs.writeFileSync(path.join(dir, 'nginx.conf'), nginxConf());
    start(NGINX, ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf')], {}, 'nginx.log');
    await waitHttp(`http://127.0.0.1:${nginxPort}/`, 10000, 'nginx');
    ctx = await launchChromium(playwright, dir);
    page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
  });

  after(async () => {
    if (ctx) await ctx.close().catch(() => {});
    for (const p of procs.reverse()) {
      try { process.kill(-p.pid, 'SIGTERM'); } catch (_) { /* gone */ }
      const end = Date.now() + 8000;
      while (p.exitCode === null && p.signalCode === null && Date.now() < end) await sleep(50);
    }
    if (dir) {
      try { services('stop'); } catch (e) { console.error(String(e)); }
      if (!process.env.INSITE_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('signs in, creates a rule in the editor, shows the toast of the alert it fires', async () => {
    const base = `http://127.0.0.1:${nginxPort}`;
    await page.goto(`${base}/?symbols=${SYM}`);
    assert.equal(await page.locator('#signin-link').count(), 1, 'signed out: a sign-in link');
    await page.goto(`${base}/signin.html?next=${encodeURIComponent(`/?symbols=${SYM}`)}#token=${token(USER)}`);
    await page.waitForSelector('#account-user', { timeout: 15000 })
      .catch(async () => assert.fail(`not signed in at ${page.url()}: ${await page.textContent('body')}`));
    assert.ok(page.url().startsWith(`${base}/?symbols=${SYM}`), `back where the sign-in started: ${page.url()}`);
    assert.equal(await page.textContent('#account-user'), USER, 'the header names the signed-in user');

    await page.click('#alerts-toggle');
    assert.equal(await page.inputValue('#rule-form [name=symbol]'), SYM, 'the editor starts on the watched symbol');
    await page.selectOption('#rule-form [name=type]', 'price_above');
    await page.fill('#rule-form [name=value]', '0');
    await page.click('#rule-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#rule-error').textContent.length > 0, null, { timeout: 10000 });
    assert.match(await page.textContent('#rule-error'), /price/, 'a bad value: the API\'s reason is shown');
    await page.fill('#rule-form [name=value]', '100');
    await page.click('#rule-form button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#rules-list li').length === 1, null, { timeout: 10000 });
    assert.match(await page.textContent('#rules-list li'), new RegExp(`${SYM} price above 100`));
    const rules = await page.evaluate(() => fetch('/api/v1/alerts/rules').then((r) => r.json()));
    assert.equal(rules.rules.length, 1, 'the API holds the rule');
    assert.equal(rules.rules[0].price, 100);

    // the subscription to alert:<user> is up once the client says so
    await page.waitForFunction(() => window.__insiteAlerts && window.__insiteAlerts.subscribed, null,
      { timeout: 15000 });
    quote(SYM, 99);
    quote(SYM, 101.5);
    await page.waitForSelector('.toast', { timeout: 60000 }).catch(() => assert.fail(`no toast\n${logs()}`));
    assert.equal(await page.textContent('.toast .title'), `${SYM} rose above $100.00`, 'the toast: the rendered title');
    assert.match(await page.textContent('.toast .body'), new RegExp(`${SYM} is trading at \\$101\\.50`));
    assert.equal(await page.getAttribute('.toast', 'dir'), 'ltr');
    assert.equal(await page.textContent('#alerts-unread'), '1', 'one unread alert');
    assert.equal(await page.locator('#alerts-list li.unread').count(), 1, 'listed, unread');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'alerts.png') });
  });

  it('settings: the language switched to Arabic persists; the next toast is Arabic, right to left', async () => {
    const base = `http://127.0.0.1:${nginxPort}`;
    await page.goto(`${base}/settings.html`);
    await page.waitForSelector('#settings-form:not([hidden])', { timeout: 10000 });
    assert.equal(await page.inputValue('#lang'), 'en', 'English by default');
    await page.selectOption('#lang', 'ar');
    await page.selectOption('#lang2', 'en');
    await page.fill('#tz', 'Asia/Dubai');
    await page.click('#settings-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'Saved.', null, { timeout: 10000 });
    await page.reload();
    await page.waitForSelector('#settings-form:not([hidden])', { timeout: 10000 });
    assert.equal(await page.inputValue('#lang'), 'ar', 'after a reload: Arabic');
    assert.equal(await page.inputValue('#lang2'), 'en', '... then English');
    assert.equal(await page.inputValue('#tz'), 'Asia/Dubai', '... and the time zone');
    const s = await page.evaluate(() => fetch('/api/v1/alerts/settings').then((r) => r.json()));
    assert.deepEqual(s.languages, ['ar', 'en'], 'stored by the API');

    await page.goto(`${base}/?symbols=${SYM}`);
    await page.waitForSelector('#account-user', { timeout: 10000 });
    await page.waitForFunction(() => window.__insiteAlerts && window.__insiteAlerts.subscribed, null,
      { timeout: 15000 });
    quote(SYM, 98);
    quote(SYM, 102.25);
    await page.waitForSelector('.toast[dir=rtl]', { timeout: 60000 }).catch(() => assert.fail(`no Arabic toast\n${logs()}`));
    const title = await page.textContent('.toast[dir=rtl] .title');
    assert.match(title, new RegExp(`^سعر ${SYM} ارتفع فوق`), 'the toast in Arabic');
    assert.equal(await page.getAttribute('.toast[dir=rtl]', 'lang'), 'ar');
    const box = await page.evaluate(() => getComputedStyle(document.querySelector('.toast[dir=rtl] .title')).direction);
    assert.equal(box, 'rtl', 'laid out right to left');
  });

  it('deletes the rule from the editor', async () => {
    await page.click('#alerts-toggle');
    await page.waitForFunction(() => document.querySelectorAll('#rules-list li').length === 1, null, { timeout: 10000 });
    await page.click('#rules-list li .delete');
    await page.waitForFunction(() => document.querySelectorAll('#rules-list li').length === 0, null, { timeout: 10000 });
    const rules = await page.evaluate(() => fetch('/api/v1/alerts/rules').then((r) => r.json()));
    assert.equal(rules.rules.length, 0, 'the API no longer has it');
  });

  it('a watchlist row\'s "alert me when…" button opens the editor on its symbol and price', async () => {
    const base = `http://127.0.0.1:${nginxPort}`;
    await page.goto(`${base}/?symbols=${SYM}`);
    await page.waitForSelector('#account-user', { timeout: 10000 });
    const row = `#rows tr[data-symbol="${SYM}"]`;
    await page.waitForSelector(row, { timeout: 10000 });
    // the row's current price, as insite-publish would publish it
    await page.waitForFunction(() => window.__insiteAlerts && window.__insiteAlerts.subscribed, null,
      { timeout: 15000 });
    const pub = await fetch(`${base}/pub?channel=stock_updates:${SYM}`, { method: 'POST',
      body: JSON.stringify({ type: 'stock_update', data: { symbol: SYM, price: 187.25, currency: 'USD',
        change: 1.5, change_percent: 0.81, volume: 1000, market_time: new Date().toISOString() } }) });
    assert.equal(pub.status, 201, 'quote published');
    await page.waitForFunction((sel) => document.querySelector(`${sel} .price`).dataset.price === '187.25', row,
      { timeout: 15000 });
    assert.equal(await page.isHidden('#alerts-panel'), true, 'the editor is closed');
    await page.click(`${row} .alert-me`);
    assert.equal(await page.isVisible('#alerts-panel'), true, 'the button opens the editor');
    assert.equal(await page.inputValue('#rule-form [name=symbol]'), SYM, '... on the row\'s symbol');
    assert.equal(await page.inputValue('#rule-form [name=type]'), 'price_above', '... a price rule');
    assert.equal(await page.inputValue('#rule-form [name=value]'), '187.25', '... at the current price');
    await page.click('#rule-form button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#rules-list li').length === 1, null, { timeout: 10000 });
    const mine = await page.evaluate(() => fetch('/api/v1/alerts/rules').then((r) => r.json()));
    assert.equal(mine.rules.length, 1, 'the API holds the rule');
    assert.equal(mine.rules[0].symbol, SYM);
    assert.equal(mine.rules[0].type, 'price_above');
    assert.equal(mine.rules[0].price, 187.25);
    const other = await fetch(`${base}/api/v1/alerts/rules`, { headers: { Cookie: `insite_token=${token(`${USER}x`)}` } });
    assert.equal(other.status, 200);
    assert.deepEqual((await other.json()).rules, [], 'another user does not see it');
    assert.deepEqual(pageErrors, [], 'no page errors');
  });
});
