// Local accounts in the page, against a real server with demo mode off: the sign-in form
// first, a session that survives a reload (cookie refresh) and refreshes its access token
// with the socket open, sessions listed and revoked, a disabled account, an invitation,
// and signing out. Then demo mode with accounts: sign in from the account dialog.
// The tests run in order and share alice's first page. Every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, watchPage, ask, waitConnected, screenshot, apexCli } from './helpers.mjs';

const SECRET = 'accounts-test-secret-0123456789';
const ENV = { DEMO_MODE: '0', APEX_SIGNUP: 'invite', APEX_JWT_SECRET: SECRET, APEX_COOKIE_SECURE: '0', APEX_ACCESS_TOKEN_TTL_SECS: '30' };
const ALICE = 'alice-password-0123';
const BOB = 'bob-password-456789';
const WAIT = 5000;     // a page reacting to something
const ANSWER = 20000;  // a whole answer from the debug build

let server, demo, b;
const alice = {};      // alice's first page: { ctx, page, problems, sockets, threadId }

before(async () => {
  [server, demo] = await Promise.all([
    startServer(ENV),
    startServer({ DEMO_MODE: '1', APEX_SIGNUP: 'open', APEX_JWT_SECRET: SECRET, APEX_COOKIE_SECURE: '0' }),
  ]);
  apexCli(server, ['users', 'create', 'alice', '--password-stdin'], `${ALICE}\n`);
  b = await launchBrowser();
});
after(async () => {
  await b?.close();
  await Promise.all([server?.stop(), demo?.stop()]);
});

/** A new browser (context) on `path`, with its WebSockets counted. */
async function open(url, path = '/') {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws));
  await page.goto(`${url}${path}`);
  return { ctx, page, problems, sockets };
}

async function signInForm(page) {
  await page.locator('#signin-form').waitFor({ state: 'visible', timeout: WAIT });
}

async function submit(page, name, password, button = 'Sign in') {
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: button, exact: true }).click();
}

async function expectText(locator, re, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    last = (await locator.textContent({ timeout: 500 }).catch(() => '')) || '';
    if (re.test(last)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`expected ${re}, got ${JSON.stringify(last)}`);
}

/** Polls `check` (a page may be reloading meanwhile: an error counts as not yet). */
async function until(what, check, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function connected(page) {
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: WAIT });
}

/** Asks and waits for the answer to complete, and for the thread to be listed. */
async function answered(page, question) {
  const done = page.locator('article.run[data-state="completed"]');
  const before = await done.count();
  await ask(page, question);
  await done.nth(before).waitFor({ timeout: ANSWER });
  await page.locator('#threads button[aria-current="true"]').waitFor({ timeout: WAIT });
}

/** Runs `step`; when it fails, prints what the page and the server were doing. */
async function explained(srv, page, step) {
  try {
    await step();
  } catch (e) {
    const state = await page.evaluate(() => ({ status: document.querySelector('#status-text').textContent, dialog: document.querySelector('#account-dialog').open })).catch((x) => x.message);
    console.log('page:', JSON.stringify(state), '\nserver log (last 30 lines):\n', srv.logs.slice(-30).join('\n'));
    throw e;
  }
}

/** Nothing that looks like an access token (a JWT) in the page's storage. */
async function noTokenStored(page) {
  const stored = await page.evaluate(() => Object.entries(localStorage).filter(([, v]) => /^eyJ/.test(v)).map(([k]) => k));
  assert.deepEqual(stored, [], 'the access token is kept in memory only');
  assert.doesNotMatch(await page.evaluate(() => document.cookie), /apex_session/, 'the session cookie is HttpOnly');
}

test('demo mode off: the sign-in form and no connection; a wrong password is refused; alice signs in and chats', async () => {
  Object.assign(alice, await open(server.url));
  const { page, sockets } = alice;
  await signInForm(page);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-name', 'focus moves into the form');
  assert.equal(await page.locator('#account-dialog').getAttribute('aria-labelledby'), 'account-title');
  assert.equal(await page.locator('#account-close').isVisible(), false, 'no Close while nobody is signed in');
  await page.keyboard.press('Escape');
  await page.keyboard.press('Escape');
  await page.waitForTimeout(200);
  assert.ok(await page.locator('#signin-form').isVisible(), 'Escape does not dismiss the sign-in');
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'offline');
  assert.equal(sockets.length, 0, 'no chat connection before signing in');
  await screenshot(page, '30-sign-in');

  await submit(page, 'alice', 'not-the-password-1');
  await expectText(page.locator('#signin-error'), /wrong name or password/);
  assert.equal(await page.locator('#signin-error').getAttribute('role'), 'alert');
  assert.equal(sockets.length, 0);

  await submit(page, 'alice', ALICE);
  await connected(page);
  await page.locator('#signin-form').waitFor({ state: 'hidden', timeout: WAIT });
  assert.equal(await page.locator('#account').getAttribute('aria-label'), 'Account: alice');
  assert.equal(await page.locator('#account-name').textContent(), 'alice');
  assert.equal(sockets.length, 1);
  await answered(page, 'Analyze my AI costs');
  await page.locator('#threads button', { hasText: 'Analyze my AI costs' }).waitFor({ timeout: WAIT });
  alice.threadId = await page.evaluate(() => localStorage.getItem('apex.thread'));
  assert.ok(alice.threadId);
  await noTokenStored(page);
  await screenshot(page, '31-signed-in');
});

test('a reload stays signed in (cookie refresh) and shows the thread', async () => {
  const { page, sockets } = alice;
  await page.reload();
  await connected(page);
  assert.equal(await page.locator('#account').getAttribute('aria-label'), 'Account: alice');
  assert.equal(await page.locator('#signin-form').isVisible(), false);
  await page.locator(`#threads button[data-thread-id="${alice.threadId}"][aria-current="true"]`).waitFor({ timeout: WAIT });
  await page.locator('article.run[data-state="completed"]').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('.msg.user').count(), 1);
  assert.equal(sockets.length, 2, 'one socket per page load');
  await noTokenStored(page);
});

test('the access token is refreshed before it runs out, on the same socket', async () => {
  // APEX_ACCESS_TOKEN_TTL_SECS=30: the page refreshes half-way, about 15 s after the reload.
  const { page, sockets } = alice;
  const refreshed = page.waitForResponse((r) => r.url().endsWith('/api/auth/refresh') && r.status() === 200, { timeout: 25000 });
  await refreshed;
  const before = sockets.length;
  await page.waitForTimeout(300);
  assert.equal(sockets.length, before, 'no new socket');
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'connected');
  // REST and the socket both still work with the new token.
  await answered(page, 'Forecast next month');
  assert.equal(await page.locator('.msg.user').count(), 2);
  assert.equal(sockets.length, before);
});

test('a second browser signs in as alice; the first lists both sessions and revokes the other, which is signed out', async () => {
  const other = await open(server.url);
  await signInForm(other.page);
  await submit(other.page, 'alice', ALICE);
  await connected(other.page);
  await other.page.locator(`#threads button[data-thread-id="${alice.threadId}"]`).waitFor({ timeout: WAIT });

  const { page } = alice;
  await page.locator('#account').click();
  await expectText(page.locator('#account-user'), /^Signed in as alice \(admin\)\.$/);
  const items = page.locator('#sessions li');
  await until('two sessions', async () => (await items.count()) === 2);
  assert.equal(await page.locator('#sessions li', { hasText: 'this browser' }).count(), 1);
  const revoke = page.getByRole('button', { name: 'Revoke', exact: true });
  assert.equal(await revoke.count(), 1, 'Revoke for the other session only');
  await screenshot(page, '32-sessions');
  const socketsBefore = other.sockets.length;
  await revoke.click();
  await until('one session left', async () => (await items.count()) === 1);

  await expectText(other.page.locator('#signin-error'), /^You were signed out\.$/);
  await signInForm(other.page);
  assert.equal(await other.page.locator('#signin-error').getAttribute('role'), 'alert');
  assert.equal(await other.page.locator('#status').getAttribute('data-state'), 'offline');
  assert.equal(await other.page.locator('#threads button').count(), 0, 'alice\'s threads are gone from the page');
  await page.waitForTimeout(1500);
  assert.equal(other.sockets.length, socketsBefore, 'no reconnect after 4001');
  await screenshot(other.page, '33-signed-out-elsewhere');
  assert.deepEqual(other.problems, []);
  await other.ctx.close();

  await page.keyboard.press('Escape');
  await page.locator('#account-dialog').waitFor({ state: 'hidden', timeout: WAIT });
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'connected', 'the first page stays signed in');
});

test('apex users disable alice: her open page is signed out within seconds', async () => {
  const { page, sockets } = alice;
  apexCli(server, ['users', 'disable', 'alice']);
  await explained(server, page, () => expectText(page.locator('#signin-error'), /^You were signed out\.$/, 8000));
  await signInForm(page);
  const n = sockets.length;
  await submit(page, 'alice', ALICE);
  await expectText(page.locator('#signin-error'), /disabled/);
  await page.waitForTimeout(500);
  assert.equal(sockets.length, n, 'no socket for a disabled account');
  assert.deepEqual(alice.problems, []);
  await alice.ctx.close();
});

test('an invitation link: bob creates an account, chats, and never sees alice\'s thread', async () => {
  // A code the server does not know is refused with its reason.
  const bogus = await open(server.url, '/#invite=not-a-real-code');
  await signInForm(bogus.page);
  await expectText(bogus.page.locator('#signin-title'), /^Create account$/);
  await submit(bogus.page, 'bob', BOB, 'Create account');
  await expectText(bogus.page.locator('#signin-error'), /invitation is unknown, used or expired/);
  await bogus.ctx.close();

  const code = apexCli(server, ['users', 'invite']).trim();
  assert.match(code, /^\S+$/);
  const bob = await open(server.url, `/#invite=${encodeURIComponent(code)}`);
  const { page } = bob;
  await signInForm(page);
  assert.equal(new URL(page.url()).hash, '', 'the invitation leaves the address bar');
  await expectText(page.locator('#signin-title'), /^Create account$/);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-name');
  // The rules are explained before asking the server.
  await submit(page, 'bob', 'short', 'Create account');
  await expectText(page.locator('#signin-error'), /10 to 256 characters/);
  await submit(page, 'bob', BOB, 'Create account');
  await connected(page);
  assert.equal(await page.locator('#account').getAttribute('aria-label'), 'Account: bob');
  await answered(page, 'How can I reduce my spend?');
  await page.locator('#threads button', { hasText: 'How can I reduce my spend?' }).waitFor({ timeout: WAIT });
  const threads = await page.locator('#threads button').evaluateAll((bs) => bs.map((x) => [x.dataset.threadId, x.textContent]));
  assert.equal(threads.length, 1, JSON.stringify(threads));
  assert.equal(threads[0][1], 'How can I reduce my spend?');
  assert.notEqual(threads[0][0], alice.threadId);
  await noTokenStored(page);
  await screenshot(page, '34-bob-invited');
  Object.assign(alice, { bob });
});

test('sign out returns to the sign-in form, and a reload does not sign back in', async () => {
  const { page, problems, sockets } = alice.bob;
  await page.locator('#account').click();
  await expectText(page.locator('#account-user'), /^Signed in as bob \(member\)\.$/);
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await signInForm(page);
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'offline');
  assert.equal(await page.locator('#account').getAttribute('aria-label'), 'Account and token');
  assert.equal(await page.evaluate(() => localStorage.getItem('apex.thread')), null, 'the thread is forgotten');
  const n = sockets.length;
  await page.reload();
  await signInForm(page);
  await page.waitForTimeout(500);
  assert.equal(await page.locator('#signin-form').isVisible(), true);
  assert.equal(sockets.length, n, 'no connection after the reload');
  assert.equal(await page.locator('#threads button').count(), 0);
  assert.deepEqual(problems, []);
  await alice.bob.ctx.close();
});

test('demo mode: a demo user signs in from the account dialog, then signs out to a new demo user', async () => {
  // This server's sign-up is open: the form also creates accounts.
  apexCli(demo, ['users', 'create', 'carol', '--password-stdin'], `${ALICE}\n`);
  const { ctx, page, problems } = await open(demo.url);
  await waitConnected(page);
  assert.equal(await page.locator('#status-text').textContent(), 'Connected (demo)');
  const demoToken = await page.evaluate(() => localStorage.getItem('apex.token'));
  assert.ok(demoToken, 'the demo identity is kept as today');
  await page.locator('#account').click();
  await signInForm(page);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-name');
  assert.ok(await page.locator('#token-input').isVisible(), 'a token can still be pasted');
  await page.getByRole('button', { name: 'Create an account', exact: true }).click();
  await expectText(page.locator('#signin-title'), /^Create account$/);
  await submit(page, 'carol', ALICE, 'Create account');
  await expectText(page.locator('#signin-error'), /the name `carol` is taken/);
  assert.equal(await page.locator('#signin-name').getAttribute('aria-invalid'), '');
  await page.getByRole('button', { name: 'I have an account', exact: true }).click();
  await expectText(page.locator('#signin-title'), /^Sign in$/);
  await page.keyboard.press('Escape');
  await page.locator('#account-dialog').waitFor({ state: 'hidden', timeout: WAIT });

  await page.locator('#account').click();
  await submit(page, 'carol', ALICE);
  await until('carol signed in', async () => (await page.locator('#account').getAttribute('aria-label')) === 'Account: carol');
  await waitConnected(page);
  assert.equal(await page.locator('#status-text').textContent(), 'Connected');
  assert.equal(await page.evaluate(() => localStorage.getItem('apex.token')), null, 'the demo token is dropped');

  await page.locator('#account').click();
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await until('a new demo user', async () => {
    const t = await page.evaluate(() => localStorage.getItem('apex.token'));
    return !!t && t !== demoToken;
  });
  await waitConnected(page);
  assert.equal(await page.locator('#status-text').textContent(), 'Connected (demo)');
  assert.match(await page.locator('#account').getAttribute('aria-label'), /^Account: demo-user-/);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('API keys: dave creates a read-only key, shown once; it reads but cannot import; revoked, it is refused', async () => {
  const DAVE = 'dave-password-13579';
  apexCli(server, ['users', 'create', 'dave', '--password-stdin'], `${DAVE}\n`);
  const { ctx, page, problems } = await open(server.url);
  await signInForm(page);
  await submit(page, 'dave', DAVE);
  await connected(page);
  const call = async (method, path, key, body) => {
    const res = await fetch(`${server.url}${path}`, { method, headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'text/csv' } : {}) }, body, signal: AbortSignal.timeout(WAIT) });
    return { status: res.status, body: await res.json().catch(() => null) };
  };

  await page.locator('#account').click();
  const panel = page.locator('#keys-panel');
  await panel.waitFor({ state: 'visible', timeout: WAIT });
  await page.locator('#keys-empty').waitFor({ state: 'visible', timeout: WAIT });
  // A name is required: explained in the alert, without asking the server.
  await page.getByRole('button', { name: 'Create key', exact: true }).click();
  await expectText(page.locator('#key-error'), /1 to 64 characters/);
  assert.equal(await page.locator('#key-error').getAttribute('role'), 'alert');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key-name');

  await page.getByLabel('Key name', { exact: true }).fill('nightly');
  for (const s of ['ingest', 'chat']) await page.getByLabel(s, { exact: true }).uncheck();
  assert.ok(await page.getByLabel('read', { exact: true }).isChecked());
  await page.getByRole('button', { name: 'Create key', exact: true }).click();
  const shown = page.locator('#new-key-value');
  await shown.waitFor({ state: 'visible', timeout: WAIT });
  await until('the new key', async () => /^apx_/.test(await shown.inputValue()));
  const key = await shown.inputValue();
  assert.equal(await page.locator('#key-error').isVisible(), false);
  await expectText(page.locator('#new-key'), /Copy it now: it will not be shown again\./);
  assert.ok(await page.getByRole('button', { name: 'Copy', exact: true }).isVisible());
  assert.equal(await shown.getAttribute('readonly'), '');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'new-key-value', 'focus on the key, to copy it');
  assert.equal(await page.getByLabel('Key name', { exact: true }).inputValue(), '', 'the form starts over');
  await screenshot(page, '35-api-key-created');

  // The key from a script: it reads, but it has no `ingest` scope.
  assert.equal((await call('GET', '/api/threads', key)).status, 200);
  const imported = await call('POST', '/api/usage/import', key, 'date,model,input_tokens\n2026-11-01,gpt-4o,10\n');
  assert.equal(imported.status, 403, JSON.stringify(imported.body));
  assert.equal(imported.body?.error?.code, 'insufficient_scope');

  // Closed and opened again: listed, and the key itself is gone from the page.
  await page.getByRole('button', { name: 'Close', exact: true }).click();
  await page.locator('#account-dialog').waitFor({ state: 'hidden', timeout: WAIT });
  await page.locator('#account').click();
  const rows = page.locator('#keys li');
  // Opening the dialog lists the keys again; until that answer comes, the list is the
  // one drawn when the key was made (never used).
  await until('the key listed with its use', async () =>
    (await rows.count()) === 1 && / · read · last used /.test(await rows.first().textContent()));
  const row = await rows.first().textContent();
  assert.ok(row.includes('nightly'), row);
  assert.ok(row.includes(`${key.slice(0, 10)}…`), `the prefix: ${row}`);
  assert.doesNotMatch(row, /ingest|chat/);
  assert.equal(await page.locator('#new-key').isVisible(), false);
  const leaked = await page.evaluate((k) => document.documentElement.outerHTML.includes(k) || document.body.innerText.includes(k)
    || [...document.querySelectorAll('input, textarea')].some((f) => f.value.includes(k)), key);
  assert.equal(leaked, false, 'the key is shown once only');

  await page.getByRole('button', { name: 'Revoke key nightly', exact: true }).click();
  await until('the row removed', async () => (await rows.count()) === 0);
  await page.locator('#keys-empty').waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'keys-title', 'focus stays in the panel');
  assert.equal((await call('GET', '/api/threads', key)).status, 401);
  assert.deepEqual(problems, []);
  await ctx.close();

  // A demo identity is anonymous: no keys for it.
  const d = await open(demo.url);
  await waitConnected(d.page);
  await d.page.locator('#account').click();
  await d.page.locator('#account-dialog').waitFor({ state: 'visible', timeout: WAIT });
  await d.page.waitForTimeout(300);
  assert.equal(await d.page.locator('#keys-panel').isVisible(), false);
  assert.deepEqual(d.problems, []);
  await d.ctx.close();
});
