// Costs: import usage files (drag-and-drop or picker, with upload progress and the
// rejected lines), and charts of GET /api/usage/summary plus the savings of the latest
// `find_savings` result seen in a run.
import { identity, session, organization, api } from './connection.js';

const $ = (id) => document.getElementById(id);
const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const money = (micros) => usd.format(micros / 1e6);
const short = (micros) => {
  const d = micros / 1e6;
  return d >= 1e6 ? `$${(d / 1e6).toFixed(1)}M` : d >= 1e3 ? `$${(d / 1e3).toFixed(1)}k` : `$${d.toFixed(d < 10 ? 2 : 0)}`;
};
const SAVINGS_KEY = 'apex.savings';
const ANALYSIS_KEY = 'apex.analysis';
const load = (key) => { try { return JSON.parse(localStorage.getItem(key) || 'null'); } catch { return null; } };
const keep = (key, value) => { try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* storage full */ } };

export class Costs {
  constructor() {
    this.charts = [];
    this.summary = null;
    this.savings = load(SAVINGS_KEY);
    this.analysis = load(ANALYSIS_KEY);
    const drop = $('drop');
    const file = $('file');
    $('choose-file').addEventListener('click', () => file.click());
    file.addEventListener('change', () => { if (file.files[0]) this.upload(file.files[0]); file.value = ''; });
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const f = e.dataTransfer?.files?.[0];
      if (f) this.upload(f);
    });
    let resize;
    addEventListener('resize', () => { clearTimeout(resize); resize = setTimeout(() => this.draw(), 150); });
  }

  /** A run's optimization result: the savings chart follows the latest one. */
  setSavings(recommendations, ts) {
    this.savings = { ts, items: recommendations.map((r) => ({ title: r.title, monthly_savings: r.monthly_savings })) };
    keep(SAVINGS_KEY, this.savings);
    if (this.visible) this.draw();
  }

  /**
   * A run's `query_usage` result (the same shape as the summary): charted when the user
   * has imported nothing, which for a demo identity means the built-in demo dataset.
   */
  setAnalysis(usage, ts) {
    const { daily, by_model, by_feature, total, days, from, to, requests } = usage;
    this.analysis = { ts, daily, by_model, by_feature, total, days, from, to, requests };
    keep(ANALYSIS_KEY, this.analysis);
    if (this.visible) this.refresh();
  }

  /** Forgets the charts of the previous identity. */
  reset() {
    this.summary = null;
    this.charted = null;
    this.savings = null;
    this.analysis = null;
    $('import-result').replaceChildren();
    $('costs-summary').textContent = '';
    this.draw();
  }

  show() { this.visible = true; this.refresh(); }
  hide() { this.visible = false; }

  upload(f, retried = false) {
    const progress = $('import-progress');
    const result = $('import-result');
    progress.hidden = false;
    progress.value = 0;
    result.textContent = `Uploading ${f.name}…`;
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/usage/import');
    const token = identity.token;
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    if (organization.id) xhr.setRequestHeader('X-Apex-Org', organization.id);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100); };
    xhr.upload.onload = () => { progress.removeAttribute('value'); result.textContent = `Importing ${f.name}…`; };
    xhr.onerror = () => { progress.hidden = true; result.textContent = 'The upload failed: the server could not be reached.'; };
    xhr.onload = () => {
      if (xhr.status === 401 && !retried && token && token === session.token) {
        // The session's access token ran out (the page slept): refresh it and send again.
        session.refresh().then((r) => {
          if (r === 'ok') { this.upload(f, true); return; }
          progress.hidden = true;
          result.textContent = 'The upload was refused: sign in again.';
        });
        return;
      }
      progress.hidden = true;
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status !== 200) {
        result.replaceChildren(el('p', { class: 'error', text: `Import refused: ${body?.error?.message || `HTTP ${xhr.status}`}` }));
        return;
      }
      this.report(f.name, body);
      this.refresh();
    };
    xhr.send(f);
  }

  report(name, r) {
    const parts = [el('p', {}, el('strong', { text: `${r.imported.toLocaleString()} rows imported` }),
      ` from ${name} (${r.format}; ${r.rows_read.toLocaleString()} read, ${r.duplicates.toLocaleString()} already there, ${r.rejected_count.toLocaleString()} rejected).`)];
    if (r.rejected_count > 0) {
      const ul = el('ul', { 'aria-label': 'Rejected lines' });
      for (const x of r.rejected) ul.append(el('li', { text: `line ${x.line}: ${x.reason}` }));
      if (r.rejected_count > r.rejected.length) ul.append(el('li', { text: `… and ${r.rejected_count - r.rejected.length} more` }));
      parts.push(el('p', { class: 'error', text: 'Rejected lines (the others were kept):' }), ul);
    }
    $('import-result').replaceChildren(...parts);
  }

  async refresh() {
    try {
      this.summary = await api('/api/usage/summary');
    } catch (e) {
      $('costs-summary').textContent = `Could not load the usage summary: ${e.message}`;
      return;
    }
    const s = this.summary;
    const a = this.analysis;
    this.charted = s.records ? s : a;
    $('costs-summary').textContent = s.records
      ? `${money(s.total)} over ${s.days} days (${s.from} to ${s.to}), ${s.requests.toLocaleString()} requests, ${s.records.toLocaleString()} usage rows.`
      : a
        ? `No imported usage yet: these charts show the data the latest answer analyzed (${money(a.total)} over ${a.days} days, ${a.from} to ${a.to}), which for a demo identity is the built-in demo dataset. Import your own export above to chart it instead.`
        : 'No imported usage yet. Answers for a demo identity use a built-in demo dataset; ask a question in the chat to chart it, or import your own export above.';
    this.draw();
  }

  draw() {
    if (!this.visible || !window.uPlot) return;
    for (const c of this.charts) c.destroy();
    this.charts = [];
    const s = this.charted;
    const rows = (list) => (list || []).map((g) => [g.key, g.cost]);
    this.timeChart($('chart-daily'), s?.daily || []);
    this.barChart($('chart-model'), rows(s?.by_model), 'No usage imported yet.');
    this.barChart($('chart-feature'), rows(s?.by_feature), 'No usage imported yet.');
    const sav = (this.savings?.items || []).map((r) => [r.title, r.monthly_savings]);
    this.barChart($('chart-savings'), sav, 'Ask “How can I reduce my spend?” in the chat: the savings it finds are charted here.');
  }

  colors() {
    const cs = getComputedStyle(document.documentElement);
    return { a: cs.getPropertyValue('--chart-1').trim(), b: cs.getPropertyValue('--chart-2').trim(), text: cs.getPropertyValue('--text').trim(), grid: cs.getPropertyValue('--border').trim() };
  }

  axis(c, extra = {}) {
    return { stroke: c.text, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 }, ...extra };
  }

  timeChart(box, daily) {
    box.replaceChildren();
    if (!daily.length) { box.append(el('p', { class: 'muted', text: 'No usage imported yet.' })); return; }
    const c = this.colors();
    const xs = daily.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000);
    const ys = daily.map((d) => d.cost / 1e6);
    const plot = new window.uPlot({
      width: Math.max(260, box.clientWidth), height: 220, legend: { show: false },
      scales: { y: { range: (u, min, max) => [0, max * 1.1 || 1] } }, tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      series: [{}, { label: 'Spend', stroke: c.a, fill: `${c.a}33`, width: 2, value: (u, v) => (v == null ? '' : usd.format(v)) }],
      axes: [this.axis(c), this.axis(c, { size: 60, values: (u, splits) => splits.map((v) => short(v * 1e6)) })],
    }, [xs, ys], box);
    this.charts.push(plot);
    box.append(table(['Day', 'Spend'], daily.map((d) => [d.day, money(d.cost)])));
    box.setAttribute('aria-label', `Spend per day from ${daily[0].day} to ${daily[daily.length - 1].day}`);
  }

  barChart(box, rows, empty) {
    box.replaceChildren();
    if (!rows.length) { box.append(el('p', { class: 'muted', text: empty })); return; }
    const c = this.colors();
    const labels = rows.map(([k]) => k);
    const clip = (s) => (s.length > 16 ? `${s.slice(0, 15)}…` : s);
    const plot = new window.uPlot({
      width: Math.max(260, box.clientWidth), height: 240, legend: { show: false },
      scales: { x: { time: false, range: [-0.5, rows.length - 0.5] }, y: { range: (u, min, max) => [0, max * 1.1 || 1] } },
      series: [{}, { label: 'USD', stroke: c.b, fill: c.b, paths: window.uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
      axes: [
        this.axis(c, { grid: { show: false }, splits: () => labels.map((_, i) => i), values: (u, splits) => splits.map((i) => clip(labels[i] ?? '')), rotate: rows.length > 3 ? -25 : 0, size: rows.length > 3 ? 70 : 40 }),
        this.axis(c, { size: 60, values: (u, splits) => splits.map((v) => short(v * 1e6)) }),
      ],
    }, [labels.map((_, i) => i), rows.map(([, v]) => v / 1e6)], box);
    this.charts.push(plot);
    box.append(table(['', 'USD'], rows.map(([k, v]) => [k, money(v)])));
  }
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

/** The chart's numbers as a table, for screen readers and exact values. */
function table(head, rows) {
  const t = el('table');
  t.append(el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { scope: 'col', text: h })))));
  const body = el('tbody');
  for (const r of rows) body.append(el('tr', {}, el('th', { scope: 'row', text: r[0] }), el('td', { class: 'num', text: r[1] })));
  t.append(body);
  return el('details', {}, el('summary', { text: 'Show the numbers' }), t);
}
