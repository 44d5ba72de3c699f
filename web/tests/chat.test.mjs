// The chat page against a real server: the golden path, history, reload mid-run, Stop,
// hostile Markdown, and two users who never see each other's threads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, launchBrowser, watchPage, ask, lastRun, waitConnected, screenshot, rest, ARTIFACTS, BUDGETS } from './helpers.mjs';

const AGENTS = ['supervisor', 'triage', 'data', 'optimization', 'report'];
let server, slow, b;

before(async () => {
  [server, slow] = await Promise.all([startServer(), startServer({ APEX_TOOL_DELAY_MS: '400' })]);
  b = await launchBrowser();
});
after(async () => {
  await b?.close();
  await Promise.all([server?.stop(), slow?.stop()]);
});

async function openPage(url, opts) {
  const ctx = await b.newContext(opts);
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(`${url}/`);
  await waitConnected(page);
  return { ctx, page, problems };
}

async function finalText(url, page, runId) {
  const token = await page.evaluate(() => localStorage.getItem('apex.token'));
  const { body } = await rest({ url }, `/api/runs/${runId}/events`, token);
  return body.events.find((e) => e.type === 'final_response').text;
}

test('first load: small, served with a strict CSP, its paint time recorded', async () => {
  // A browser that is already running (as a user's is); each load in a new context,
  // so with an empty cache. The median of three loads is recorded (and, in budget mode,
  // held to 300 ms).
  const warm = await b.newContext();
  await (await warm.newPage()).setContent('<p>warm-up</p>');
  await warm.close();
  const loads = [];
  for (let i = 0; i < 3; i++) {
    const ctx = await b.newContext();
    const page = await ctx.newPage();
    const response = await page.goto(`${server.url}/`);
    const headers = response.headers();
    assert.match(headers['content-security-policy'], /script-src 'self'/);
    assert.doesNotMatch(headers['content-security-policy'], /unsafe-inline|unsafe-eval/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    assert.match(headers['content-type'], /^text\/html/);
    await waitConnected(page);
    loads.push(await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const resources = performance.getEntriesByType('resource');
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      return {
        first_contentful_paint_ms: Math.round(fcp.startTime),
        dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
        transferred_bytes: nav.transferSize + resources.reduce((s, r) => s + r.transferSize, 0),
        requests: 1 + resources.length,
      };
    }));
    await ctx.close();
  }
  const median = (k) => loads.map((l) => l[k]).sort((x, y) => x - y)[1];
  const m = { first_contentful_paint_ms: median('first_contentful_paint_ms'), dom_content_loaded_ms: median('dom_content_loaded_ms'), transferred_bytes: Math.max(...loads.map((l) => l.transferred_bytes)), requests: loads[0].requests, loads };
  writeFileSync(join(ARTIFACTS, 'first-load.json'), JSON.stringify(m, null, 2));
  console.log('first load:', JSON.stringify(m));
  // Wall-clock budgets hold on a quiet machine, not on a shared CI one: they are checked
  // in budget mode (APEX_WEB_BUDGETS=1, docs/web.md); the figure is always recorded.
  if (BUDGETS) assert.ok(m.first_contentful_paint_ms <= 300, `first render took ${m.first_contentful_paint_ms} ms (median of 3)`);
  assert.ok(m.transferred_bytes <= 250 * 1024, `first load transferred ${m.transferred_bytes} bytes`);
});

test('golden path: five agent cards complete, the answer streams, history survives a reload', async () => {
  const { ctx, page, problems } = await openPage(server.url);
  await screenshot(page, '01-empty');
  await ask(page, 'Analyze my AI costs');
  const run = lastRun(page);
  await run.locator('.agent[data-agent="supervisor"]').waitFor({ state: 'attached' });
  await page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  for (const agent of AGENTS) {
    assert.equal(await run.locator(`.agent[data-agent="${agent}"]`).getAttribute('data-state'), 'done', agent);
  }
  assert.equal(await run.locator('.agent').count(), 5);
  assert.ok(await run.locator('.tool[data-tool="find_savings"][data-state="ok"]').count() === 1);
  await expectText(run.locator('.answer h2').first(), /Your AI spend/);
  const runId = await run.getAttribute('data-run-id');
  const expected = await finalText(server.url, page, runId);
  await run.locator(`.answer[data-length="${expected.length}"]`).waitFor(); // the whole answer is on screen
  assert.match(await run.locator('.run-time').textContent(), /total \d/);
  // Each card shows its step's real duration: most take under a millisecond, shown as such.
  const durations = await run.locator('.agent .agent-head .dur').allTextContents();
  assert.equal(durations.length, 5);
  assert.ok(durations.every((d) => /^\d+(\.\d+)? (ms|s)$/.test(d)), durations.join(', '));
  assert.ok(durations.every((d) => !/^0(\.00)? ms$/.test(d)), `no step takes no time: ${durations.join(', ')}`);
  assert.equal(await page.locator('#sr-live').getAttribute('aria-live'), 'polite');
  // The live region holds the latest streamed text (it starts over past 4,000 characters).
  const spoken = await page.locator('#sr-live').textContent();
  assert.ok(spoken.length > 0 && expected.endsWith(spoken.slice(-200)), 'streamed text reaches the live region');
  await run.locator('.timeline > summary').click();
  await screenshot(page, '02-golden-path-timeline');

  await page.reload();
  await waitConnected(page);
  await page.locator('#threads button', { hasText: 'Analyze my AI costs' }).waitFor();
  await page.locator(`article.run[data-run-id="${runId}"][data-state="completed"]`).waitFor();
  assert.equal(await page.locator('.msg.user').count(), 1);
  assert.equal(await page.locator('article.run .answer h2', { hasText: 'Your AI spend' }).count(), 1);
  assert.equal(await page.locator('#threads button[aria-current="true"]').textContent(), 'Analyze my AI costs');
  await screenshot(page, '03-history-after-reload');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a direct answer offers its follow-up questions as buttons that ask them in the thread', async () => {
  const { ctx, page, problems } = await openPage(server.url);
  await ask(page, 'Which feature costs the most?');
  const first = page.locator('article.run[data-state="completed"]').first();
  await first.waitFor({ timeout: 20000 });
  const buttons = first.locator('.suggestions.next button');
  await buttons.first().waitFor();
  assert.equal(await buttons.count(), 2);
  // The answer's first sentence is the answer; the plain-text "Ask next" list became the buttons.
  await expectText(first.locator('.answer p').first(), /^The feature that cost the most .* is support-/);
  assert.equal(await first.locator('.answer strong', { hasText: /^Ask next$/ }).count(), 0);
  // The agents this question needed: no savings search, no projection.
  assert.equal(await first.locator('.agent').count(), 4);
  assert.equal(await first.locator('.agent[data-agent="optimization"]').count(), 0);
  const question = await buttons.first().textContent();
  await buttons.first().click();
  await page.locator('article.run[data-state="completed"]').nth(1).waitFor({ timeout: 20000 });
  const bubbles = page.locator('.msg.user');
  assert.equal(await bubbles.count(), 2, 'asked in the same thread');
  assert.equal((await bubbles.nth(1).locator('.bubble').textContent()).trim(), question);
  await screenshot(page, '02b-ask-next');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('Edit and Regenerate branch the thread; every branch stays, can be shown again, and survives a reload', async () => {
  // The slow server: the thread is drawn again while the regenerated answer is still coming.
  const { ctx, page, problems } = await openPage(slow.url);
  const done = (n) => page.locator('article.run[data-state="completed"]').nth(n).waitFor({ timeout: 20000 });
  const bubbles = page.locator('.msg.user .bubble');
  const shown = async () => (await bubbles.allTextContents()).map((t) => t.trim());
  await ask(page, 'Which feature costs the most?');
  await done(0);
  await ask(page, 'Which model costs the most?');
  await done(1);

  // Edit the second question: the composer takes its text; sending asks it on a new branch.
  await page.locator('.msg.user').nth(1).locator('button.edit').click();
  const box = page.locator('#composer-input');
  assert.equal(await box.inputValue(), 'Which model costs the most?');
  await expectText(page.locator('#notice'), /Editing your message/);
  await box.fill('Which project costs the most?');
  await box.press('Enter');
  await page.locator('.msg.user .branch-pos', { hasText: '2 / 2' }).waitFor({ timeout: 10000 });
  await done(1);
  assert.deepEqual(await shown(), ['Which feature costs the most?', 'Which project costs the most?']);
  await expectText(lastRun(page).locator('.answer p').first(), /^The project that cost the most/);
  await screenshot(page, '02c-edited');

  // The original is one switch away, with its own answer.
  await page.locator('.msg.user .branch button.prev').click();
  assert.deepEqual(await shown(), ['Which feature costs the most?', 'Which model costs the most?']);
  await expectText(page.locator('.msg.user .branch-pos'), /^1 \/ 2$/);
  await expectText(lastRun(page).locator('.answer p').first(), /^The model that cost the most/);

  // Regenerate the answer shown: a second answer to the same question, beside the first.
  const original = await lastRun(page).getAttribute('data-run-id');
  await lastRun(page).locator('button.regenerate').click();
  const answers = page.locator('article.run .branch-pos');
  await expectText(answers, /^2 \/ 2$/);
  await page.locator('article.run[data-state="completed"]').nth(1).waitFor({ timeout: 20000 });
  assert.notEqual(await lastRun(page).getAttribute('data-run-id'), original);
  assert.deepEqual(await shown(), ['Which feature costs the most?', 'Which model costs the most?'], 'the branch regenerated stays shown');
  await expectText(lastRun(page).locator('.answer p').first(), /^The model that cost the most/);
  await screenshot(page, '02d-regenerated');

  // After a reload: the thread's latest branch, both switches, and the first answer one click away.
  await page.reload();
  await waitConnected(page);
  await page.locator('article.run .branch-pos', { hasText: '2 / 2' }).waitFor({ timeout: 10000 });
  assert.deepEqual(await shown(), ['Which feature costs the most?', 'Which model costs the most?']);
  await expectText(page.locator('.msg.user .branch-pos'), /^1 \/ 2$/);
  await lastRun(page).locator('.branch button.prev').click();
  assert.equal(await lastRun(page).getAttribute('data-run-id'), original);

  // A message sent now continues the branch shown (the switch moved it off the latest).
  await page.locator('.msg.user .branch button.next-version').click();
  assert.deepEqual(await shown(), ['Which feature costs the most?', 'Which project costs the most?']);
  await ask(page, 'and what about the second one?');
  await done(2);
  await expectText(lastRun(page).locator('.answer p').first(), /^You spent \S+ on project /);
  const token = await page.evaluate(() => localStorage.getItem('apex.token'));
  const thread = await page.evaluate(() => localStorage.getItem('apex.thread'));
  const { body } = await rest(slow, `/api/threads/${thread}/messages`, token);
  assert.equal(body.messages.filter((m) => m.role === 'user').length, 4, 'every question kept');
  assert.equal(body.runs.length, 5);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a reload in the middle of a run resumes it: complete answer, no duplicate text', async () => {
  const { ctx, page, problems } = await openPage(slow.url);
  await ask(page, 'Analyze my AI costs');
  const run = lastRun(page);
  await run.locator('.agent[data-agent="data"]').waitFor({ state: 'attached', timeout: 15000 });
  const runId = await run.getAttribute('data-run-id');
  assert.equal(await run.getAttribute('data-state'), 'running');
  await screenshot(page, '04-mid-run');
  await page.reload();
  await waitConnected(page);
  const resumed = page.locator(`article.run[data-run-id="${runId}"]`);
  await resumed.waitFor({ timeout: 10000 });
  await page.locator(`article.run[data-run-id="${runId}"][data-state="completed"]`).waitFor({ timeout: 20000 });
  const expected = await finalText(slow.url, page, runId);
  await resumed.locator(`.answer[data-length="${expected.length}"]`).waitFor(); // the whole answer is on screen
  assert.equal(await page.locator('.answer h2', { hasText: 'Your AI spend' }).count(), 1);
  assert.equal(await resumed.locator('.agent').count(), 5);
  const token = await page.evaluate(() => localStorage.getItem('apex.token'));
  const { body } = await rest(slow, `/api/runs/${runId}/events`, token);
  const calls = body.events.filter((e) => e.type === 'tool_executing').length;
  assert.ok(calls >= 6);
  assert.equal(await resumed.locator('.tool').count(), calls, 'every tool call appears once');
  assert.equal(await resumed.locator('.thinking').count(), body.events.filter((e) => e.type === 'agent_thinking').length);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('Stop cancels the run and says so', async () => {
  const { ctx, page, problems } = await openPage(slow.url);
  await ask(page, 'Forecast next month');
  const stop = page.locator('#stop');
  await stop.waitFor({ state: 'visible' });
  await lastRun(page).locator('.agent[data-agent="triage"]').waitFor({ state: 'attached' });
  await stop.click();
  const run = page.locator('article.run[data-state="cancelled"]');
  await run.waitFor({ timeout: 10000 });
  await expectText(run.locator('.run-end'), /Stopped/);
  await expectText(run.locator('.run-state'), /Stopped/);
  assert.equal(await run.locator('.agent[data-state="running"]').count(), 0, 'no agent is left spinning');
  await stop.waitFor({ state: 'hidden' });
  await screenshot(page, '05-stopped');
  // The thread takes a new message afterwards.
  await ask(page, 'Analyze my AI costs');
  await page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('HTML and javascript: links in messages stay inert', async () => {
  const { ctx, page, problems } = await openPage(server.url);
  const hostile = 'Look <img src=x onerror="window.__xss=1"> and [click me](javascript:window.__xss=2) <script>window.__xss=3</script>';
  await ask(page, hostile);
  await page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  const bubble = page.locator('.msg.user .bubble').last();
  assert.equal(await page.locator('#transcript img, #transcript script, #threads img').count(), 0);
  assert.match(await bubble.textContent(), /<img src=x onerror=/, 'the HTML is shown as text');
  const link = bubble.locator('a', { hasText: 'click me' });
  const href = await link.count() ? await link.getAttribute('href') : null;
  assert.ok(!href || !/^\s*javascript:/i.test(href), `href is ${href}`);
  await bubble.getByText('click me').click();
  await page.waitForTimeout(200);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await page.reload();
  await waitConnected(page);
  await page.locator('.msg.user').waitFor();
  assert.equal(await page.locator('#transcript img, #transcript script').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await screenshot(page, '06-inert-html');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('two browser contexts are two users who never see each other\'s threads', async () => {
  const a = await openPage(server.url);
  const c = await openPage(server.url);
  await ask(a.page, 'Alpha private question');
  await ask(c.page, 'Bravo private question');
  await a.page.locator('#threads button', { hasText: 'Alpha private question' }).waitFor();
  await c.page.locator('#threads button', { hasText: 'Bravo private question' }).waitFor();
  await a.page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  await c.page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  await a.page.reload();
  await c.page.reload();
  await waitConnected(a.page);
  await waitConnected(c.page);
  await a.page.locator('#threads button').first().waitFor();
  await c.page.locator('#threads button').first().waitFor();
  assert.equal(await a.page.locator('#threads button', { hasText: 'Bravo' }).count(), 0);
  assert.equal(await c.page.locator('#threads button', { hasText: 'Alpha' }).count(), 0);
  const ua = await a.page.evaluate(() => localStorage.getItem('apex.token'));
  const uc = await c.page.evaluate(() => localStorage.getItem('apex.token'));
  assert.notEqual(ua, uc);
  const threadA = await a.page.evaluate(() => localStorage.getItem('apex.thread'));
  assert.equal((await rest(server, `/api/threads/${threadA}/messages`, uc)).status, 404);
  await a.ctx.close();
  await c.ctx.close();
});

test('a token in the URL fragment or pasted signs in as that user; a bad one is refused with the reason', async () => {
  const alice = server.token('alice');
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(`${server.url}/#token=${alice}`);
  await waitConnected(page);
  assert.equal(await page.locator('#status-text').textContent(), 'Connected');
  assert.equal(new URL(page.url()).hash, '', 'the token leaves the address bar');
  await ask(page, 'Alice asks about spend');
  await page.locator('#threads button', { hasText: 'Alice asks about spend' }).waitFor();
  const { body } = await rest(server, '/api/threads', alice);
  assert.deepEqual(body.threads.map((t) => t.title), ['Alice asks about spend']);

  // Paste Bob's token in the account dialog: the page is Bob's, Alice's thread is gone.
  await page.locator('#account').click();
  await expectText(page.locator('#account-user'), /Signed in as alice\./);
  await page.locator('#token-input').fill(server.token('bob'));
  await page.locator('#use-token').click();
  await waitConnected(page);
  await page.locator('#account').click();
  await expectText(page.locator('#account-user'), /Signed in as bob\./);
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#threads button').count(), 0);

  // A token signed with another secret: refused, and the dialog says why.
  await page.locator('#account').click();
  await page.locator('#token-input').fill(alice.slice(0, -4) + 'AAAA');
  await page.locator('#use-token').click();
  await expectText(page.locator('#account-error'), /token was refused: the token is invalid: bad signature/);
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'offline');
  await screenshot(page, '16-bad-token');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('usable at 375 px, by keyboard, in the dark theme', async () => {
  const { ctx, page, problems } = await openPage(server.url, { viewport: { width: 375, height: 740 }, colorScheme: 'dark' });
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px`);
  // Keyboard only: the composer has focus, Enter sends.
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');
  await page.keyboard.type('Analyze my AI costs');
  await page.keyboard.press('Shift+Enter');
  assert.match(await page.locator('#composer-input').inputValue(), /\n$/);
  await page.keyboard.press('Enter');
  await page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(wide <= 0, `the answer makes the page scroll sideways by ${wide} px`);
  await screenshot(page, '07-narrow-dark');
  // The threads menu opens from the keyboard.
  await page.locator('#menu').focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.locator('#menu').getAttribute('aria-expanded'), 'true');
  await page.locator('#threads button').first().waitFor({ state: 'visible' });
  await page.waitForTimeout(250); // the slide-in
  await screenshot(page, '08-narrow-threads');
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#menu').getAttribute('aria-expanded'), 'false');
  await page.locator('#threads button').first().waitFor({ state: 'hidden' });
  // The theme switch works and is remembered.
  await page.locator('#theme').click();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
  await page.reload();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a message over the size limit is refused with a clear message', async () => {
  const { ctx, page } = await openPage(server.url);
  await page.locator('#composer-input').fill('x'.repeat(9000));
  await expectText(page.locator('#counter'), /\/ 8,192 bytes/);
  await page.locator('#composer-input').press('Enter');
  await expectText(page.locator('#notice'), /Too long/);
  assert.equal(await page.locator('.msg.user').count(), 0);
  assert.equal((await page.locator('#composer-input').inputValue()).length, 9000, 'the text is kept');
  await ctx.close();
});

async function expectText(locator, re) {
  const deadline = Date.now() + 10000;
  let last = '';
  while (Date.now() < deadline) {
    last = (await locator.textContent().catch(() => '')) || '';
    if (re.test(last)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`expected ${re}, got ${JSON.stringify(last)}`);
}
