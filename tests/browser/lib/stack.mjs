// Real servers for the browser tests: redis-server and nginx (our modules,
// master + 2 workers) on free loopback ports in a temporary directory, and
// Debian's Chromium driven by playwright-core. Everything started here is
// stopped by stop(), and killed on process exit if a test died first.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DEPS = process.env.WEB_DEPS_DIR || path.join(ROOT, 'build/web-deps');
export const CHROMIUM = process.env.INSITE_CHROMIUM || '/usr/bin/chromium';
const NGINX = process.env.TEST_NGINX_BINARY || '/usr/sbin/nginx';
const MODULES = (process.env.TEST_NGINX_LOAD_MODULES
  || ['ngx_http_insite_module', 'ngx_http_insite_ws_module']
    .map((m) => path.join(ROOT, 'build/modules', `${m}.so`)).join(' '))
  .split(/\s+/).filter(Boolean)
  // core first, then ws: the dashboard needs only these two
  .filter((m) => /ngx_http_insite_(ws_)?module\.so$/.test(m));

const live = new Set();   // child processes to kill at exit
process.on('exit', () => {
  for (const p of live) {
    try { process.kill(-p.pid, 'SIGKILL'); } catch (_) { try { p.kill('SIGKILL'); } catch (_e) { /* gone */ } }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

async function waitPort(port, ms, proc, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    if (await canConnect(port)) return;
    await sleep(20);
  }
  throw new Error(`${what} did not listen on ${port} within ${ms} ms`);
}

export function requireDeps() {
  const missing = [];
  for (const m of MODULES.length === 2 ? MODULES : ['(core + ws modules)']) {
    if (!fs.existsSync(m)) missing.push(`${m} (make modules)`);
  }
  if (!fs.existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (apt-get install chromium)`);
  if (!fs.existsSync(path.join(DEPS, 'node_modules/playwright-core'))) missing.push('playwright-core (scripts/web-deps.sh)');
  if (!fs.existsSync(path.join(ROOT, 'build/web/vendor/lightweight-charts.standalone.production.js'))) {
    missing.push('lightweight-charts (scripts/web-deps.sh)');
  }
  if (missing.length) throw new Error(`missing: ${missing.join('; ')}`);
  const require = createRequire(path.join(DEPS, 'package.json'));
  return require('playwright-core');
}

// the gateway module, for a stack that puts worker APIs behind it
export const GATEWAY_MODULE = (process.env.TEST_NGINX_LOAD_MODULES || '').split(/\s+/)
  .find((m) => /ngx_http_insite_gateway_module\.so$/.test(m))
  || path.join(ROOT, 'build/modules/ngx_http_insite_gateway_module.so');

export class Stack {
  // opts.gateway: load the gateway module; opts.httpConf / opts.serverConf:
  // extra lines for nginx's http block / the dashboard's server block,
  // functions of the stack (called once Redis is up)
  constructor(opts = {}) {
    this.opts = opts;
  }

  async start() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'insite-browser-'));
    await this.startRedis();
    await this.startNginx();
    return this;
  }

  async startRedis() {
    this.redisPort = await freePort();
    const dir = path.join(this.dir, 'redis');
    fs.mkdirSync(dir);
    this.redis = spawn('redis-server', ['--port', String(this.redisPort), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', path.join(dir, 'redis.log')],
    { stdio: 'ignore', detached: true });
    live.add(this.redis);
    await waitPort(this.redisPort, 5000, this.redis, 'redis-server');
  }

  redisCli(...args) {
    const r = spawnSync('redis-cli', ['-p', String(this.redisPort), ...args], { encoding: 'utf8', timeout: 5000 });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  }

  nginxConf() {
    const d = this.dir;
    const user = process.getuid && process.getuid() === 0 ? 'user root;' : '';
    const mods = this.opts.gateway ? [...MODULES, GATEWAY_MODULE] : MODULES;
    const extra = (f) => (f ? f(this) : '');
    return `${mods.map((m) => `load_module ${m};`).join('\n')}
daemon off;
master_process on;
worker_processes 2;
${user}
error_log ${d}/logs/error.log info;
pid ${d}/logs/nginx.pid;
events { worker_connections 4096; accept_mutex off; }
http {
    access_log off;
    client_body_temp_path ${d}/body;
    proxy_temp_path ${d}/proxy;
    types {
        text/html html;
        text/css css;
        application/javascript js mjs;
        image/png png;
    }
    default_type application/octet-stream;
    insite_redis 127.0.0.1:${this.redisPort};
    insite_ws_shutdown_spread 1s;
    ${extra(this.opts.httpConf)}
    server {
        listen 127.0.0.1:${this.port};
        # the dashboard (docs/dashboard.md)
        location / { root ${ROOT}/web; index index.html; }
        location /clients/js/ { alias ${ROOT}/clients/js/; }
        location /vendor/ { alias ${ROOT}/build/web/vendor/; }
        location = /ws {
            insite_ws;
            insite_ws_max_channels 200;
        }
        # permessage-deflate (tests/browser/deflate.test.mjs)
        location = /ws-deflate {
            insite_ws;
            insite_ws_deflate on;
            insite_ws_deflate_min_size 64;
        }
        location = /internal/publish { insite_ws_publish; }
        ${extra(this.opts.serverConf)}
    }
}
`;
  }

  async startNginx() {
    this.port = await freePort();
    fs.mkdirSync(path.join(this.dir, 'logs'), { recursive: true });
    fs.writeFileSync(path.join(this.dir, 'nginx.conf'), this.nginxConf());
    const out = fs.openSync(path.join(this.dir, 'logs/stderr.log'), 'a');
    this.nginx = spawn(NGINX, ['-p', `${this.dir}/`, '-c', path.join(this.dir, 'nginx.conf')],
      { stdio: ['ignore', out, out], detached: true });
    live.add(this.nginx);
    await waitPort(this.port, 10000, this.nginx, 'nginx');
    const end = Date.now() + 5000;
    while (this.workers().length < 2 && Date.now() < end) await sleep(20);
  }

  workers() {
    const r = spawnSync('ps', ['-o', 'pid=', '--ppid', String(this.nginx.pid)], { encoding: 'utf8' });
    return r.stdout.split('\n').map((s) => s.trim()).filter(Boolean).map(Number);
  }

  // SIGHUP to the master: new workers, old ones close their clients with 1001
  reloadNginx() { process.kill(this.nginx.pid, 'SIGHUP'); }

  get base() { return `http://127.0.0.1:${this.port}`; }

  // POST /internal/publish; retried with the same Idempotency-Key while nginx
  // or Redis is unavailable, so each message is published exactly once
  async publish(channel, type, data, key) {
    const idem = key || `${channel}-${process.hrtime.bigint()}-${Math.random()}`;
    for (let i = 0; ; i++) {
      try {
        const res = await fetch(`${this.base}/internal/publish?channel=${encodeURIComponent(channel)}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'Idempotency-Key': idem },
          body: JSON.stringify({ type, data }),
        });
        const body = await res.text();
        if (res.status === 200 || res.status === 201) return JSON.parse(body);
        if (res.status !== 503 || i > 100) throw new Error(`publish ${channel}: ${res.status} ${body}`);
      } catch (e) {
        if (i > 100 || (e.message && e.message.startsWith('publish '))) throw e;
      }
      await sleep(50);
    }
  }

  errorLog() {
    let s = '';
    for (const f of ['logs/error.log', 'logs/stderr.log']) {
      try { s += fs.readFileSync(path.join(this.dir, f), 'utf8'); } catch (_) { /* none */ }
    }
    return s;
  }

  async stop() {
    const stopProc = async (p, sig, ms) => {
      if (!p || p.exitCode !== null || p.signalCode !== null) { live.delete(p); return; }
      const done = new Promise((r) => p.once('exit', r));
      try { process.kill(-p.pid, sig); } catch (_) { p.kill(sig); }
      const t = await Promise.race([done.then(() => true), sleep(ms).then(() => false)]);
      if (!t) { try { process.kill(-p.pid, 'SIGKILL'); } catch (_) { /* gone */ } await done; }
      live.delete(p);
    };
    await stopProc(this.nginx, 'SIGQUIT', 8000);
    await stopProc(this.redis, 'SIGTERM', 5000);
    if (this.dir && !process.env.INSITE_KEEP_TMP) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// Chromium as the issue asks: Debian's binary, headless, no network chatter,
// a fresh profile
export async function launchChromium(playwright, dir) {
  const profile = fs.mkdtempSync(path.join(dir || os.tmpdir(), 'chromium-'));
  const ctx = await playwright.chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return ctx;
}
