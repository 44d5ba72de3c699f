// Organizations in the page, against a real server with demo mode off: an invitation link
// (`#join=CODE`) adds the user to the organization and selects it; the picker shows
// which organization the answers and the charts read, switches between it and the
// user's own space, and is remembered across a reload. Every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { BINARY, startServer, launchBrowser, watchPage, ask, screenshot } from './helpers.mjs';

const SECRET = 'organizations-test-secret-0123456789';
const WAIT = 5000;
const ANSWER = 20000;

let server, b;

before(async () => {
  server = await startServer({ DEMO_MODE: '0', APEX_JWT_SECRET: SECRET, APEX_COOKIE_SECURE: '0' });
  b = await launchBrowser();
});
after(async () => {
  await b?.close();
  await server?.stop();
});

/** A token for `user`, minted with the server's secret by `apex token`. */
function token(user) {
  return execFileSync(BINARY, ['token', '--user', user, '--data-dir', server.dataDir], { env: { ...process.env, APEX_JWT_SECRET: SECRET } }).toString().trim();
}

async function call(method, path, bearer, { json, body, org } = {}) {
  const headers = { Authorization: `Bearer ${bearer}` };
  if (json) headers['Content-Type'] = 'application/json';
  if (org) headers['X-Apex-Org'] = org;
  const res = await fetch(`${server.url}${path}`, { method, headers, body: json ? JSON.stringify(json) : body, signal: AbortSignal.timeout(WAIT) });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** Asks in a new thread and returns the completed answer's text. */
async function answer(page, question) {
  await page.locator('#new-chat').click();
  const done = page.locator('article.run[data-state="completed"]');
  await ask(page, question);
  await done.first().waitFor({ timeout: ANSWER });
  return done.first().textContent();
}

async function connected(page) {
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: WAIT });
}

test('a join link adds dave to Acme; the picker switches answers and charts between Acme and his own space, and a reload keeps it', async () => {
  const carol = token('carol');
  const created = await call('POST', '/api/orgs', carol, { json: { name: 'Acme' } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const acme = created.body.id;
  const csv = 'date,model,feature,input_tokens,output_tokens,cost_usd\n2026-11-02,gpt-4o,support-bot,1000,100,1234.00\n';
  const imported = await call('POST', '/api/usage/import', carol, { body: csv, org: acme });
  assert.equal(imported.status, 200, JSON.stringify(imported.body));
  const invitation = await call('POST', `/api/orgs/${acme}/invitations`, carol, { json: { role: 'viewer' } });
  assert.equal(invitation.status, 201);
  assert.match(invitation.body.path, /^\/#join=/);

  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(`${server.url}/#token=${token('dave')}&join=${invitation.body.code}`);
  await connected(page);
  const picker = page.locator('#org');
  await picker.waitFor({ state: 'visible', timeout: WAIT });
  await page.waitForFunction((id) => document.querySelector('#org').value === id, acme, { timeout: WAIT });
  assert.deepEqual(await picker.locator('option').allTextContents(), ['Personal', 'Acme (viewer)']);
  await page.getByText('You joined Acme as viewer.').waitFor({ timeout: WAIT });
  assert.equal(new URL(page.url()).hash, '', 'the code leaves the address bar');
  await connected(page);

  assert.match(await answer(page, 'What did we spend in total?'), /\$1,234\.00/, 'Acme\'s usage');
  await page.locator('#tab-costs').click();
  await page.locator('#costs-summary').filter({ hasText: '$1,234.00' }).waitFor({ timeout: WAIT });
  await screenshot(page, 'organization-costs');
  await page.locator('#tab-chat').click();

  await picker.selectOption({ label: 'Personal' });
  await page.getByText('Answers and charts now read your own usage.').waitFor({ timeout: WAIT });
  await connected(page);
  assert.doesNotMatch(await answer(page, 'What did we spend in total?'), /\$1,234\.00/, 'his own space has nothing of Acme\'s');

  await page.reload();
  await connected(page);
  await picker.waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await picker.inputValue(), '', 'still his own space');
  await picker.selectOption({ label: 'Acme (viewer)' });
  await connected(page);
  await page.reload();
  await page.waitForFunction((id) => document.querySelector('#org').value === id, acme, { timeout: WAIT });
  await connected(page);
  assert.match(await answer(page, 'What did we spend in total?'), /\$1,234\.00/, 'Acme again after the reload');

  // Removed from Acme, the next load falls back to his own space.
  const removed = await call('DELETE', `/api/orgs/${acme}/members/dave`, carol);
  assert.equal(removed.status, 204);
  await page.reload();
  await connected(page);
  await page.waitForTimeout(300);
  assert.equal(await picker.isVisible(), false, 'no organization left to pick');
  assert.doesNotMatch(await answer(page, 'What did we spend in total?'), /\$1,234\.00/);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('in the account dialog, erin creates an organization (it is picked) and invites fay as an analyst by link', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(`${server.url}/#token=${token('erin')}`);
  await connected(page);
  await page.locator('#account').click();
  const panel = page.locator('#orgs-panel');
  await panel.waitFor({ state: 'visible', timeout: WAIT });
  await page.getByRole('button', { name: 'Create organization' }).click();
  await page.locator('#org-error').filter({ hasText: 'Enter a name.' }).waitFor({ timeout: WAIT });
  await page.getByLabel('Organization name').fill('Erin Labs');
  await page.getByRole('button', { name: 'Create organization' }).click();
  await panel.getByText('Erin Labs').waitFor({ timeout: WAIT });
  const picker = page.locator('#org');
  await picker.waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await picker.locator('option:checked').textContent(), 'Erin Labs (admin)', 'the new organization is picked');

  await page.getByLabel('Role for an invitation to Erin Labs').selectOption('analyst');
  await page.getByRole('button', { name: 'Invite to Erin Labs' }).click();
  await page.locator('#invite-link').waitFor({ state: 'visible', timeout: WAIT });
  const link = await page.locator('#invite-link-value').inputValue();
  await screenshot(page, 'organizations-dialog');
  assert.match(link, /^http:\/\/127\.0\.0\.1:\d+\/#join=[A-Za-z0-9_-]{43}$/);
  await page.locator('#account-close').click();
  // Not left on screen once the dialog closes.
  await page.waitForFunction(() => document.querySelector('#invite-link-value').value === '' && document.querySelector('#invite-link').hidden, null, { timeout: WAIT });
  assert.deepEqual(problems, []);

  const other = await b.newContext();
  const fay = await other.newPage();
  await fay.goto(link.replace('#join=', `#token=${token('fay')}&join=`));
  await fay.getByText('You joined Erin Labs as analyst.').waitFor({ timeout: WAIT });
  assert.equal(await fay.locator('#org option:checked').textContent(), 'Erin Labs (analyst)');
  // Used once: the same link does nothing for anyone else.
  const again = await other.newPage();
  await again.goto(link.replace('#join=', `#token=${token('gus')}&join=`));
  await again.getByText(/The invitation could not be used/).waitFor({ timeout: WAIT });
  await other.close();
  await ctx.close();
});

test('hana shares a thread with Harbor: ivan reads it there, read only; hana makes him analyst in the members list, and he leaves', async () => {
  const hana = token('hana');
  const created = await call('POST', '/api/orgs', hana, { json: { name: 'Harbor' } });
  const harbor = created.body.id;
  const csv = 'date,model,feature,input_tokens,output_tokens,cost_usd\n2026-11-03,gpt-4o,search,2000,200,2345.00\n';
  assert.equal((await call('POST', '/api/usage/import', hana, { body: csv, org: harbor })).status, 200);
  const invitation = await call('POST', `/api/orgs/${harbor}/invitations`, hana, { json: { role: 'viewer' } });
  const joined = await call('POST', '/api/orgs/join', token('ivan'), { json: { code: invitation.body.code } });
  assert.equal(joined.status, 200, JSON.stringify(joined.body));

  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(`${server.url}/#token=${hana}`);
  await connected(page);
  await page.locator('#org').selectOption({ label: 'Harbor (admin)' });
  await connected(page);
  assert.match(await answer(page, 'Analyze my AI costs'), /\$2,345\.00/, 'Harbor\'s usage');
  const bar = page.locator('#thread-bar');
  await bar.getByText('Only you can read this thread.').waitFor({ timeout: WAIT });
  await page.getByRole('button', { name: 'Share with Harbor' }).click();
  await bar.getByText('Shared with Harbor: its members can read this thread.').waitFor({ timeout: WAIT });
  await page.locator('#threads button', { hasText: 'shared' }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#shared-threads button').count(), 0, 'her own thread is listed once, as hers');

  const other = await b.newContext();
  const ivan = await other.newPage();
  const ivanProblems = watchPage(ivan);
  await ivan.goto(`${server.url}/#token=${token('ivan')}`);
  await connected(ivan);
  await ivan.locator('#org').selectOption({ label: 'Harbor (viewer)' });
  await ivan.locator('#shared-title').filter({ hasText: 'Shared in Harbor' }).waitFor({ timeout: WAIT });
  const item = ivan.locator('#shared-threads button', { hasText: 'Analyze my AI costs' });
  await item.waitFor({ timeout: WAIT });
  assert.match(await item.textContent(), /by hana/);
  assert.equal(await ivan.locator('#threads button').count(), 0, 'not one of his threads');
  await item.click();
  await ivan.locator('#transcript article.run[data-state="completed"]').waitFor({ timeout: WAIT });
  assert.match(await ivan.locator('#transcript .answer').first().textContent(), /\$2,345\.00/, 'hana\'s answer, with Harbor\'s figures');
  await ivan.locator('#thread-bar').getByText('Shared by hana in Harbor · read only').waitFor({ timeout: WAIT });
  for (const hidden of ['#composer-input', '#send', '#transcript .msg-tools .edit', '#transcript .regenerate']) {
    assert.equal(await ivan.locator(hidden).first().isVisible(), false, `${hidden} is not offered`);
  }
  await screenshot(ivan, 'shared-thread');
  // A reload does not reopen someone else's thread as if it were his.
  await ivan.reload();
  await connected(ivan);
  await ivan.waitForTimeout(300);
  assert.equal(await ivan.locator('#composer-input').isVisible(), true);
  assert.equal(await ivan.locator('#transcript article.run').count(), 0);

  // Hana's members list: ivan becomes an analyst.
  await page.locator('#account').click();
  await page.getByRole('button', { name: 'Members of Harbor' }).click();
  await page.getByText('hana (you)').waitFor({ timeout: WAIT });
  await page.getByLabel('Role of ivan').selectOption('analyst');
  await expectMembers(hana, harbor, [['hana', 'admin'], ['ivan', 'analyst']]);
  await page.locator('#account-close').click();

  // Ivan leaves: Harbor and its shared thread are gone from his page.
  ivan.on('dialog', (d) => d.accept());
  await ivan.locator('#account').click();
  await ivan.getByRole('button', { name: 'Members of Harbor' }).click();
  await ivan.getByRole('button', { name: 'Leave Harbor' }).click();
  await ivan.locator('#org-box').waitFor({ state: 'hidden', timeout: WAIT });
  await ivan.locator('#shared-box').waitFor({ state: 'hidden', timeout: WAIT });
  await expectMembers(hana, harbor, [['hana', 'admin']]);

  // Hana stops sharing.
  await page.getByRole('button', { name: 'Stop sharing' }).click();
  await bar.getByText('Only you can read this thread.').waitFor({ timeout: WAIT });
  assert.deepEqual(problems, []);
  assert.deepEqual(ivanProblems, []);
  await other.close();
  await ctx.close();
});

async function expectMembers(bearer, org, expected) {
  const deadline = Date.now() + WAIT;
  let got;
  do {
    got = (await call('GET', `/api/orgs/${org}/members`, bearer)).body.members.map((m) => [m.name || m.user_id, m.role]);
    if (JSON.stringify(got) === JSON.stringify(expected)) return;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < deadline);
  assert.deepEqual(got, expected);
}
