// Shared by the browser tests: a real `apex serve` (the built debug binary) on loopback
// with a temporary data dir, and the system Chromium driven by playwright-core.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(here, '..', '..');
export const BINARY = process.env.APEX_BIN || join(ROOT, 'target', 'debug', 'apex');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = process.env.APEX_WEB_ARTIFACTS || join(here, 'artifacts');
// Budget mode: wall-clock budgets (first paint, frame times) are asserted, not only recorded.
export const BUDGETS = process.env.APEX_WEB_BUDGETS === "1";
// Serve the page's files from disk instead of those embedded in the binary: from web/
// with APEX_WEB_FROM_DISK=1, or from the directory it names. To try page changes without
// rebuilding. Off by default, so the tests check the page the binary really serves.
const fromDisk = process.env.APEX_WEB_FROM_DISK || '';
export const WEB_FROM_DISK = fromDisk === '1' ? join(ROOT, 'web') : fromDisk;
export const FIXTURE_CSV = join(ROOT, 'crates', 'cli', 'tests', 'fixtures', 'usage.csv');
mkdirSync(ARTIFACTS, { recursive: true });

/** Starts `apex serve --bind 127.0.0.1:0` and resolves once it listens and is ready. */
export async function startServer(env = {}) {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run cargo build -p apex-cli first`);
  const dataDir = mkdtempSync(join(tmpdir(), 'apex-web-'));
  const child = spawn(BINARY, ['serve', '--bind', '127.0.0.1:0', '--data-dir', dataDir, '--log-json'], {
    env: { ...process.env, RUST_LOG: 'info', DEMO_MODE: '1', APEX_ENV: 'development', APEX_JWT_SECRET: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = [];
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
      reject(new Error(`apex serve did not start:\n${logs.join('\n')}`));
    }, 30000);
    let addr = null;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        logs.push(line);
        let j;
        try { j = JSON.parse(line); } catch { return; }
        const f = j.fields || j;
        if (f.addr) addr = f.addr;
        if (f.message === 'ready' && addr) { clearTimeout(timer); resolve(`http://${addr}`); }
      });
    }
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`apex serve exited with ${code}:\n${logs.join('\n')}`)); });
  });
  return {
    url,
    logs,
    dataDir,
    /** A token for `user`, minted by `apex token` with this server's secret. */
    token(user) {
      return execFileSync(BINARY, ['token', '--user', user, '--data-dir', dataDir], { env: { ...process.env, APEX_JWT_SECRET: '' } }).toString().trim();
    },
    async stop() {
      if (child.exitCode == null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The system Chromium, headless. Playwright gives it a fresh temporary profile, and
 * every context is a separate, empty one (its own storage: its own demo user). */
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // A document fulfilled by a route has no address, so Chromium would treat its
      // socket to 127.0.0.1 as a public page reaching into the local network.
      ...(WEB_FROM_DISK ? ['--disable-features=LocalNetworkAccessChecks'] : [])],
  });
  return {
    browser,
    newContext: async (opts = {}) => {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...opts });
      if (WEB_FROM_DISK) await serveWebFromDisk(ctx);
      return ctx;
    },
    close: () => browser.close(),
  };
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };

/** Answers `/` and `/assets/…` with the files in web/, keeping the server's headers (CSP). */
async function serveWebFromDisk(ctx) {
  const page = (url) => url.pathname === '/' || url.pathname.startsWith('/assets/');
  await ctx.route(page, async (route) => {
    const { pathname } = new URL(route.request().url());
    const file = join(WEB_FROM_DISK, pathname === '/' ? 'index.html' : pathname.slice('/assets/'.length));
    if (!existsSync(file)) return route.continue();
    const res = await route.fetch({ headers: { ...route.request().headers(), 'if-none-match': '' } });
    const headers = { ...res.headers(), 'content-type': TYPES[extname(file)] || 'application/octet-stream' };
    for (const h of ['content-length', 'content-encoding', 'etag']) delete headers[h];
    await route.fulfill({ status: 200, headers, body: readFileSync(file) });
  });
}

/** Runs an `apex` command on the server's data dir (e.g. `['users', 'create', 'alice',
 *  '--password-stdin']`), with `input` on stdin; returns its stdout. */
export function apexCli(server, [command, ...rest], input = '') {
  const args = [command, '--data-dir', server.dataDir, ...rest];
  return execFileSync(BINARY, args, { input, env: process.env, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
}

/** Collects page errors and CSP violations so a test can assert there were none. */
export function watchPage(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket|Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return problems;
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
}

/** Types a message into the composer and sends it with Enter. */
export async function ask(page, text) {
  const box = page.locator('#composer-input');
  await box.fill(text);
  await box.press('Enter');
}

/** The run article of the newest run on the page. */
export function lastRun(page) {
  return page.locator('article.run').last();
}

export async function waitConnected(page) {
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: 15000 });
}

export async function rest(server, path, token) {
  const res = await fetch(`${server.url}${path}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: await res.json().catch(() => null) };
}
