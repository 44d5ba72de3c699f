// How runs end and how the page survives the network, as the user sees it: a dropped
// socket mid-run (the page's socket is proxied to the real server and cut), a run
// timeout, and failures and interruptions sent by a scripted peer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, watchPage, ask, lastRun, waitConnected, screenshot, rest } from './helpers.mjs';

let slow, timeouts, b;
before(async () => {
  [slow, timeouts] = await Promise.all([
    startServer({ APEX_TOOL_DELAY_MS: '300' }),
    startServer({ APEX_TOOL_DELAY_MS: '700', APEX_RUN_TIMEOUT_SECS: '1' }),
  ]);
  b = await launchBrowser();
});
after(async () => {
  await b?.close();
  await Promise.all([slow?.stop(), timeouts?.stop()]);
});

test('a dropped connection mid-run: reconnecting, then the run completes with nothing lost or repeated', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  const sockets = [];
  await page.routeWebSocket(/\/ws$/, (ws) => {
    ws.connectToServer();
    sockets.push(ws);
  });
  await page.goto(`${slow.url}/`);
  await waitConnected(page);
  await ask(page, 'Analyze my AI costs');
  const run = lastRun(page);
  await run.locator('.agent[data-agent="triage"]').waitFor({ state: 'attached', timeout: 15000 });
  const runId = await run.getAttribute('data-run-id');
  const seen = sockets.length;
  await sockets.at(-1).close({ code: 4000, reason: 'cut by the test' });
  await page.locator('#status[data-state="reconnecting"]').waitFor({ timeout: 5000 });
  await screenshot(page, '13-reconnecting');
  await waitConnected(page);
  assert.ok(sockets.length > seen, 'the page opened a new socket');
  await page.locator(`article.run[data-run-id="${runId}"][data-state="completed"]`).waitFor({ timeout: 20000 });
  const token = await page.evaluate(() => localStorage.getItem('apex.token'));
  const { body } = await rest(slow, `/api/runs/${runId}/events`, token);
  const final = body.events.find((e) => e.type === 'final_response').text;
  await run.locator(`.answer[data-length="${final.length}"]`).waitFor(); // the whole answer is on screen
  assert.equal(await run.locator('.tool').count(), body.events.filter((e) => e.type === 'tool_executing').length);
  assert.equal(await run.locator('.thinking').count(), body.events.filter((e) => e.type === 'agent_thinking').length);
  assert.equal(await page.locator('.answer h2', { hasText: 'Your AI spend' }).count(), 1);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a run that times out is shown as timed out, never as an endless spinner', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  await page.goto(`${timeouts.url}/`);
  await waitConnected(page);
  await ask(page, 'Analyze my AI costs');
  const run = page.locator('article.run[data-state="timed_out"]');
  await run.waitFor({ timeout: 15000 });
  assert.match(await run.locator('.run-state').textContent(), /Timed out/);
  assert.match(await run.locator('.run-end').textContent(), /took too long/);
  assert.equal(await run.locator('.agent[data-state="running"], .tool[data-state="running"]').count(), 0);
  assert.equal(await page.locator('#stop').isVisible(), false);
  await screenshot(page, '14-timed-out');
  await ctx.close();
});

const RUN = '01a21352-0000-7000-8000-00000000000a';
const THREAD = '01a21352-0000-7000-8000-00000000000b';

async function scripted(end) {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  await page.routeWebSocket(/\/ws$/, (ws) => {
    ws.send(JSON.stringify({ type: 'connection_ready', user_id: 'scripted', connection_id: RUN, demo: false, protocol: 'apex.v1' }));
    ws.onMessage((raw) => {
      const f = JSON.parse(raw);
      if (f.type !== 'user_message') return;
      ws.send(JSON.stringify({ type: 'message_accepted', run_id: RUN, thread_id: THREAD, message_id: RUN, client_message_id: f.client_message_id }));
      const events = [
        { type: 'agent_started', agent: 'supervisor' },
        { type: 'agent_started', agent: 'optimization' },
        { type: 'tool_executing', agent: 'optimization', tool: 'find_savings', tool_call_id: 'call_1', args: {} },
        { type: 'response_delta', message_id: RUN, text: 'Partial **answer**' },
        ...end,
      ];
      events.forEach((e, i) => ws.send(JSON.stringify({ ...e, run_id: RUN, thread_id: THREAD, seq: i + 1, ts: 1795620492441 + i })));
    });
  });
  await page.goto(`${slow.url}/`);
  await waitConnected(page);
  await ask(page, 'Analyze my AI costs');
  return { ctx, page };
}

test('a failed run says which tool failed and why', async () => {
  const { ctx, page } = await scripted([
    { type: 'tool_completed', agent: 'optimization', tool: 'find_savings', tool_call_id: 'call_1', ok: false, error: 'the price table is missing', duration_ms: 4 },
    { type: 'run_failed', code: 'tool_failed', message: 'tool `find_savings` failed: the price table is missing' },
  ]);
  const run = page.locator('article.run[data-state="failed"]');
  await run.waitFor();
  assert.match(await run.locator('.run-end').textContent(), /failed \(tool_failed\): tool `find_savings` failed: the price table is missing/);
  assert.match(await run.locator('.tool[data-state="error"] .err').textContent(), /price table is missing/);
  assert.equal(await run.locator('.agent[data-state="running"]').count(), 0);
  assert.match(await run.locator('.answer').textContent(), /Partial answer/);
  await screenshot(page, '15-failed');
  await ctx.close();
});

test('an interrupted run shows its partial answer as partial', async () => {
  const { ctx, page } = await scripted([
    { type: 'tool_completed', agent: 'optimization', tool: 'find_savings', tool_call_id: 'call_1', ok: false, error: 'the server stopped before the tool finished', duration_ms: 0 },
    { type: 'run_interrupted', partial_text: 'Partial **answer**' },
  ]);
  const run = page.locator('article.run[data-state="interrupted"]');
  await run.waitFor();
  assert.match(await run.locator('.run-end').textContent(), /server stopped.*partial/);
  assert.equal(await run.locator('.answer strong').textContent(), 'answer');
  await ctx.close();
});
