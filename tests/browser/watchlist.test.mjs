// The dashboard's watchlist is the signed-in user's saved one: headless
// Chromium against real nginx (gateway: JWT from the insite_token cookie,
// X-User-Id set from it), the real insite-stocks and PostgreSQL (a schema of
// the test's own) and Redis (tests/browser/lib/stack.mjs).
//   - alice's saved list (NVDA, AMD) is what the page shows, not ?symbols=;
//   - adding TSLA and removing NVDA on the page saves [AMD, TSLA] (read back
//     from PostgreSQL), and alice's second list is kept as it was;
//   - bob's list is untouched, and his page shows his list only;
//   - a reload shows the saved state; without a token, ?symbols= as before.
//
//   node --test tests/browser/watchlist.test.mjs   (make modules workers, INSITE_PG_DSN set)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, Stack, freePort, launchChromium, requireDeps, sleep } from './lib/stack.mjs';

const SECRET = 'watchlist-browser-test-secret';
const SCHEMA = `wl_browser_${process.pid}`;
const WORKER = path.join(ROOT, 'build/bin/insite-stocks');

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}
function jwt(sub) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const sig = b64url(crypto.createHmac('sha256', SECRET).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}

function psql(sql) {
  const r = spawnSync('psql', [process.env.INSITE_PG_DSN, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { encoding: 'utf8', timeout: 20000 });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
  return r.stdout.trim();
}
const savedLists = (user) => psql(`SELECT name || ':' || array_to_string(symbols, ',') FROM ${SCHEMA}.watchlists`
  + ` WHERE user_id = '${user}' ORDER BY position`).split('\n').filter(Boolean);

async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

let stack, ctx, worker, workerPort;

async function startWorker() {
  workerPort = await freePort();
  psql(`CREATE SCHEMA ${SCHEMA}`);
  const dsn = process.env.INSITE_PG_DSN;
  const env = { ...process.env,
    INSITE_PG_DSN: `${dsn}${dsn.includes('?') ? '&' : '?'}options=-csearch_path%3D${SCHEMA}`,
    INSITE_PG_MIGRATIONS_DIR: path.join(ROOT, 'workers/migrations'),
    INSITE_STOCKS_HTTP_PORT: String(workerPort), INSITE_REDIS_PORT: String(stack.redisPort),
    INSITE_REDIS_PREFIX: `${SCHEMA}:`, INSITE_STOCKS_HTTP_THREADS: '2' };
  const log = fs.openSync(path.join(stack.dir, 'stocks.log'), 'a');
  worker = spawn(WORKER, [], { env, stdio: ['ignore', log, log], detached: true });
  await until('insite-stocks /healthz', async () => {
    try { return (await fetch(`http://127.0.0.1:${workerPort}/healthz`)).ok; } catch (_) { return false; }
  });
}

// a user's lists, written the way the API writes them (PUT as that user)
async function putLists(user, watchlists) {
  const r = await fetch(`http://127.0.0.1:${workerPort}/api/v1/watchlists`, {
    method: 'PUT', headers: { 'Content-Type': 'application/json', 'X-User-Id': user },
    body: JSON.stringify({ watchlists }),
  });
  assert.equal(r.status, 200, await r.text());
}

async function openAs(user, query = '') {
  await ctx.clearCookies();
  if (user) await ctx.addCookies([{ name: 'insite_token', value: jwt(user), url: stack.base }]);
  const page = await ctx.newPage();
  await page.goto(`${stack.base}/index.html${query}`);
  return page;
}
const rows = (page) => page.$$eval('#rows tr', (trs) => trs.map((t) => t.dataset.symbol));

describe('the dashboard watchlist is the saved one', { skip: !process.env.INSITE_PG_DSN && 'INSITE_PG_DSN not set' }, () => {
  before(async () => {
    const playwright = requireDeps();
    if (!fs.existsSync(WORKER)) throw new Error(`${WORKER} missing (make workers)`);
    // the worker's port is in nginx's config: Redis first, the worker, then nginx
    stack = new Stack({
      gateway: true,
      httpConf: () => `insite_gateway_jwt_secret "${SECRET}"; insite_gateway_jwt_cookie insite_token;`,
      serverConf: () => ['/api/v1/watchlists', '/api/v1/stocks'].map((loc) => `location ${loc} {
            insite_gateway_jwt on;
            proxy_http_version 1.1;
            proxy_set_header X-User-Id $insite_user_id;
            proxy_pass http://127.0.0.1:${workerPort};
        }`).join('\n        '),
    });
    stack.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'insite-browser-wl-'));
    await stack.startRedis();
    await startWorker();
    await stack.startNginx();
    ctx = await launchChromium(playwright, stack.dir);
    await putLists('alice', [{ name: 'Mine', symbols: ['NVDA', 'AMD'] }, { name: 'Later', symbols: ['QQQ'] }]);
    await putLists('bob', [{ name: 'Bob', symbols: ['SPY'] }]);
  });
  after(async () => {
    if (ctx) await ctx.close().catch(() => {});
    if (worker && worker.exitCode === null) {
      const done = new Promise((r) => worker.once('exit', r));
      process.kill(-worker.pid, 'SIGTERM');
      await done;
    }
    if (stack) await stack.stop();
    try { psql(`DROP SCHEMA ${SCHEMA} CASCADE`); } catch (_) { /* not created */ }
  });

  it('shows alice her saved list, not ?symbols', async () => {
    const page = await openAs('alice', '?symbols=AAPL,MSFT');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0);
    assert.deepEqual(await rows(page), ['NVDA', 'AMD']);
    await page.close();
  });

  it('adding and removing a symbol saves the list', async () => {
    const page = await openAs('alice');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 2);
    await page.fill('#add-symbol', 'tsla');
    await page.press('#add-symbol', 'Enter');
    await until('TSLA saved', () => savedLists('alice')[0] === 'Mine:NVDA,AMD,TSLA');
    await page.click('#rows tr[data-symbol="NVDA"] button.rm');
    await until('NVDA removed', () => savedLists('alice')[0] === 'Mine:AMD,TSLA');
    assert.deepEqual(await rows(page), ['AMD', 'TSLA']);
    assert.deepEqual(savedLists('alice'), ['Mine:AMD,TSLA', 'Later:QQQ'], 'the second list is kept');
    assert.deepEqual(savedLists('bob'), ['Bob:SPY'], "bob's list is untouched");
    assert.match(await page.textContent('#watchlist-state'), /saved/);
    await page.close();
  });

  it('a reload shows the saved list; bob sees his own', async () => {
    const page = await openAs('alice');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0);
    assert.deepEqual(await rows(page), ['AMD', 'TSLA']);
    await page.close();
    const bob = await openAs('bob');
    await bob.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0);
    assert.deepEqual(await rows(bob), ['SPY']);
    await bob.close();
  });

  it('without a token: ?symbols as before, nothing saved', async () => {
    const page = await openAs(null, '?symbols=AAPL,MSFT');
    await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0);
    assert.deepEqual(await rows(page), ['AAPL', 'MSFT']);
    await page.click('#rows tr[data-symbol="AAPL"] button.rm');
    await until('URL updated', async () => new URL(page.url()).searchParams.get('symbols') === 'MSFT');
    assert.equal(await page.evaluate(() => window.__insiteWatchlist.puts), 0);
    await page.close();
  });
});
