// Cost views against a real server: import by file picker and by drag-and-drop, with
// the rejected lines, then the charts of the summary and of a run's savings.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startServer, launchBrowser, watchPage, ask, waitConnected, screenshot, rest, FIXTURE_CSV } from './helpers.mjs';

let server, b;
before(async () => { server = await startServer(); b = await launchBrowser(); });
after(async () => { await b?.close(); await server?.stop(); });

async function waitFor(fn, what) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) { if (await fn()) return; await new Promise((r) => setTimeout(r, 50)); }
  assert.fail(`timed out waiting for ${what}`);
}

test('import a CSV and see the charts, the rejected lines and the savings', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(`${server.url}/`);
  await waitConnected(page);
  await page.locator('#tab-costs').click();
  await page.locator('#costs-summary', { hasText: 'No imported usage yet' }).waitFor();
  assert.equal(await page.locator('#chat-view').isVisible(), false, 'one view at a time');
  await screenshot(page, '09-costs-empty');

  // 112 good rows and two bad ones (lines 114 and 115 of the file).
  const csv = `${readFileSync(FIXTURE_CSV, 'utf8').trimEnd()}\n2026-11-20,gpt-4o,openai,oops,0,1,1,x,y\n2026-11-40,gpt-4o,openai,1,0,1,1,x,y\n`;
  const file = join(tmpdir(), `apex-usage-${process.pid}.csv`);
  writeFileSync(file, csv);
  await page.locator('#file').setInputFiles(file);
  const result = page.locator('#import-result');
  await result.locator('strong', { hasText: '112 rows imported' }).waitFor();
  const rejected = result.locator('ul[aria-label="Rejected lines"] li');
  assert.equal(await rejected.count(), 2);
  assert.match(await rejected.nth(0).textContent(), /^line 114: .*input_tokens.*oops/);
  assert.match(await rejected.nth(1).textContent(), /^line 115: .*date/);

  // The summary's charts: uPlot canvases plus the numbers as tables.
  for (const id of ['chart-daily', 'chart-model', 'chart-feature']) {
    await page.locator(`#${id} canvas`).first().waitFor();
  }
  const token = await page.evaluate(() => localStorage.getItem('apex.token'));
  const { body: summary } = await rest(server, '/api/usage/summary', token);
  assert.equal(await page.locator('#chart-model tbody tr').count(), summary.by_model.length);
  assert.equal(await page.locator('#chart-feature tbody tr').count(), summary.by_feature.length);
  assert.equal(await page.locator('#chart-daily tbody tr').count(), summary.daily.length);
  assert.match(await page.locator('#chart-model tbody tr').first().textContent(), new RegExp(summary.by_model[0].key));
  assert.match(await page.locator('#costs-summary').textContent(), /over \d+ days \(2026-10-27 to 2026-11-23\)/);

  // Drag-and-drop of the same file: everything is already there.
  await page.evaluate((text) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], 'again.csv', { type: 'text/csv' }));
    document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, csv);
  await result.locator('strong', { hasText: '0 rows imported' }).waitFor();
  assert.match(await result.textContent(), /0 rows imported.*112 already there/s);

  // Savings come from a run's optimization result.
  assert.match(await page.locator('#chart-savings').textContent(), /Ask/);
  await page.locator('#tab-chat').click();
  await ask(page, 'How can I reduce my spend?');
  await page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  await page.locator('#tab-costs').click();
  await page.locator('#chart-savings canvas').first().waitFor();
  await waitFor(async () => (await page.locator('#chart-savings tbody tr').count()) > 0, 'savings rows');
  assert.match(await page.locator('#chart-savings tbody').textContent(), /\$/);
  await screenshot(page, '10-costs-charts');
  await page.locator('#theme').click();
  await page.locator('#chart-daily canvas').first().waitFor();
  await screenshot(page, '11-costs-charts-dark');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('an unreadable file is refused with the server\'s reason', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  await page.goto(`${server.url}/`);
  await waitConnected(page);
  await page.locator('#tab-costs').click();
  await page.locator('#file').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello there\nnothing to see\n') });
  await page.locator('#import-result .error', { hasText: 'Import refused' }).waitFor();
  await ctx.close();
});

test('before any import, the charts show what the latest answer analyzed (the demo data)', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(`${server.url}/`);
  await waitConnected(page);
  await ask(page, 'Analyze my AI costs');
  await page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  const runId = await page.locator('article.run').last().getAttribute('data-run-id');
  const token = await page.evaluate(() => localStorage.getItem('apex.token'));
  const { body } = await rest(server, `/api/runs/${runId}/events`, token);
  const usage = body.events.find((e) => e.type === 'tool_completed' && e.tool === 'query_usage').result;
  await page.locator('#tab-costs').click();
  await page.locator('#costs-summary', { hasText: 'the latest answer analyzed' }).waitFor();
  await page.locator('#chart-daily canvas').first().waitFor();
  assert.equal(await page.locator('#chart-daily tbody tr').count(), usage.daily.length);
  assert.equal(await page.locator('#chart-model tbody tr').count(), usage.by_model.length);
  assert.equal(await page.locator('#chart-feature tbody tr').count(), usage.by_feature.length);
  assert.ok(await page.locator('#chart-savings tbody tr').count() > 0);
  // Kept across a reload.
  await page.reload();
  await waitConnected(page);
  await page.locator('#tab-costs').click();
  await page.locator('#chart-model canvas').first().waitFor();
  await screenshot(page, '17-costs-demo-analysis');
  assert.deepEqual(problems, []);
  await ctx.close();
});

/** The server's own money display (`Money`'s Display, what `total_display` holds): integer
 * micro-dollars rounded half-up to the cent, thousands grouped: `$1,234.56`, `-$1.23`. */
function dollars(micros) {
  assert.ok(Number.isSafeInteger(micros), `an amount in integer micro-dollars, got ${JSON.stringify(micros)}`);
  const m = BigInt(micros);
  const cents = ((m < 0n ? -m : m) + 5000n) / 10000n;
  const sign = m < 0n && cents > 0n ? '-' : '';
  const whole = (cents / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}$${whole}.${String(cents % 100n).padStart(2, '0')}`;
}
const FIGURE = /-?\$\d[\d,]*(?:\.\d+)?[kM]?/g;
const figures = (text) => text.match(FIGURE) || [];

/** Every dollar figure of the costs view: the summary sentence, each table row as
 * [label, amount], and all figures anywhere in the view's text (to catch unchecked ones). */
function shownFigures(page) {
  return page.evaluate(() => {
    const rows = (id) => [...document.querySelectorAll(`#${id} tbody tr`)].map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td').textContent]);
    return {
      summary: document.getElementById('costs-summary').textContent,
      daily: rows('chart-daily'), model: rows('chart-model'), feature: rows('chart-feature'), savings: rows('chart-savings'),
      // Text node by text node: a cell's text never runs into the next one's.
      texts: (() => {
        const out = [];
        const walk = document.createTreeWalker(document.getElementById('costs-view'), NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) out.push(walk.currentNode.data);
        return out;
      })(),
    };
  });
}

/** Asserts the view shows exactly the API's figures: `usage` is a summary-shaped API body
 * (total, by_model, by_feature, daily in micro-dollars), `savings` a find_savings result. */
function assertFigures(shown, usage, savings, what) {
  assert.deepEqual(figures(shown.summary), [dollars(usage.total)], `${what}: the total in "${shown.summary}"`);
  const expect = (list, key, amount) => list.map((g) => [g[key], dollars(g[amount])]);
  assert.ok(usage.by_model.length > 0 && usage.by_feature.length > 0 && usage.daily.length > 0, `${what}: the API has rows`);
  assert.deepEqual(shown.model, expect(usage.by_model, 'key', 'cost'), `${what}: the per-model amounts`);
  assert.deepEqual(shown.feature, expect(usage.by_feature, 'key', 'cost'), `${what}: the per-feature amounts`);
  assert.deepEqual(shown.daily, expect(usage.daily, 'day', 'cost'), `${what}: the per-day amounts`);
  assert.ok(savings.recommendations.length > 0, `${what}: the API has savings`);
  assert.deepEqual(shown.savings, expect(savings.recommendations, 'title', 'monthly_savings'), `${what}: the savings amounts`);
  // Nothing else in the view shows a dollar figure that was not compared above.
  const checked = [shown.summary, ...[shown.model, shown.feature, shown.daily, shown.savings].flat(2)].flatMap(figures);
  assert.deepEqual(shown.texts.flatMap(figures).sort(), checked.sort(), `${what}: every dollar figure of the view is one compared with the API`);
}

test('every dollar figure of the costs view equals the API\'s, for the demo data and an imported file', async () => {
  const ctx = await b.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page);
  await page.goto(`${server.url}/`);
  await waitConnected(page);
  const token = await page.evaluate(() => localStorage.getItem('apex.token'));
  assert.ok(token, 'the page holds a token');

  // The demo data: what the run's query_usage and find_savings returned, read back through
  // the API with the page's token.
  await ask(page, 'Analyze my AI costs');
  await page.locator('article.run[data-state="completed"]').waitFor({ timeout: 20000 });
  const runId = await page.locator('article.run').last().getAttribute('data-run-id');
  const { status, body } = await rest(server, `/api/runs/${runId}/events`, token);
  assert.equal(status, 200);
  const result = (tool) => body.events.find((e) => e.type === 'tool_completed' && e.tool === tool)?.result;
  const demo = result('query_usage');
  const savings = result('find_savings');
  assert.ok(demo?.daily && savings?.recommendations, 'the run queried the usage and found savings');
  await page.locator('#tab-costs').click();
  await page.locator('#costs-summary', { hasText: 'the latest answer analyzed' }).waitFor();
  await page.locator('#chart-model canvas').first().waitFor();
  assertFigures(await shownFigures(page), demo, savings, 'demo data');

  // An imported file: the summary endpoint, whose total_display is the server's own text.
  await page.locator('#file').setInputFiles(FIXTURE_CSV);
  await page.locator('#import-result strong', { hasText: '112 rows imported' }).waitFor();
  await page.locator('#costs-summary', { hasText: 'usage rows.' }).waitFor();
  await page.locator('#chart-model canvas').first().waitFor();
  const { status: s2, body: summary } = await rest(server, '/api/usage/summary', token);
  assert.equal(s2, 200);
  assert.equal(summary.records, 112);
  assert.equal(dollars(summary.total), summary.total_display, 'the test formats money as the server does');
  assert.notEqual(summary.total, demo.total, 'the imported data is not the demo data');
  const shown = await shownFigures(page);
  assert.deepEqual(figures(shown.summary), [summary.total_display], `imported file: the total in "${shown.summary}"`);
  // The savings table is the latest answer's (the demo run's) until the user asks again.
  assertFigures(shown, summary, savings, 'imported file');
  assert.deepEqual(problems, []);
  await ctx.close();
});
