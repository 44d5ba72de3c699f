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
