// The chat: threads sidebar, transcript, composer, and one live timeline per run.
// Every run is drawn from its events alone (live over the socket, or from
// GET /api/runs/{id}/events for history), deduplicated and ordered by `seq`, so a
// reload or a dropped socket resumes from the last rendered event without duplicating
// or losing text.
import { api } from './connection.js';
import { setMarkdown, StreamingMarkdown } from './markdown.js';

const AGENT_ORDER = ['supervisor', 'triage', 'data', 'optimization', 'report'];
const TERMINAL = new Set(['final_response', 'run_failed', 'run_cancelled', 'run_timed_out', 'run_interrupted']);
const FRAME_LIMIT = 8192;
const THREAD_KEY = 'apex.thread';
const utf8 = new TextEncoder();

const $ = (id) => document.getElementById(id);
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}
const seconds = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`);
// A step's own duration: microseconds when the server sent them (most steps take well
// under a millisecond), else milliseconds.
const took = (ev) => (ev.duration_us > 0 && ev.duration_us < 10000 ? `${(ev.duration_us / 1000).toFixed(2)} ms` : seconds(ev.duration_ms ?? 0));
const pretty = (v) => JSON.stringify(v, null, 2);

/** One run: its agent cards, its streamed answer, and how it ended. */
export class RunView {
  constructor(runId, threadId, { live, onSavings, onUsage, announce, onAsk, onRegenerate }) {
    this.runId = runId;
    this.threadId = threadId;
    this.seq = 0;
    this.terminal = null;
    this.text = '';
    this.firstTs = null;
    this.lastTs = null;
    this.agents = new Map();
    this.tools = new Map();
    this.onSavings = onSavings;
    this.onUsage = onUsage;
    this.announce = announce;
    this.onAsk = onAsk;
    this.onRegenerate = onRegenerate;
    this.userMessageId = null;
    this.answerId = null;           // the answer's message id, once text has come
    this.suggestions = [];
    this.queue = [];
    this.filling = false;
    this.renderPending = false;
    this.renderCost = 0;
    this.lastRender = 0;

    this.state = el('span', { class: 'run-state', text: 'Working…' });
    this.time = el('span', { class: 'run-time' });
    this.agentList = el('ol', { class: 'agents', 'aria-label': 'Agents' });
    this.details = el('details', { class: 'timeline' }, el('summary', {}, this.state, this.time), this.agentList);
    if (live) this.details.open = true;
    this.answer = el('div', { class: 'answer md', 'aria-busy': 'true' });
    this.markdown = new StreamingMarkdown(this.answer);
    this.end = el('p', { class: 'run-end', role: 'status' });
    this.next = el('nav', { class: 'suggestions next', 'aria-label': 'Ask next', hidden: '' });
    // Other answers to the same message (a switch, set by the thread) and "Regenerate".
    this.switchSlot = el('span', { class: 'switch-slot' });
    this.regenerate = el('button', { type: 'button', class: 'regenerate', text: 'Regenerate', hidden: '' });
    this.regenerate.addEventListener('click', () => this.onRegenerate?.(this));
    this.actions = el('div', { class: 'run-actions' }, this.switchSlot, this.regenerate);
    this.root = el('article', { class: 'run', 'data-run-id': runId, 'data-state': 'running', 'aria-label': 'Agent run' }, this.details, this.answer, this.next, this.end, this.actions);
    this.ticker = setInterval(() => this.tick(), 250);
  }

  get active() { return !this.terminal; }

  /** The user message this run answers: once known, an ended run can be asked again. */
  answers(messageId) {
    this.userMessageId = messageId;
    this.updateActions();
  }

  setSwitch(node) { this.switchSlot.replaceChildren(...(node ? [node] : [])); }

  updateActions() { this.regenerate.hidden = !(this.terminal && this.userMessageId && this.onRegenerate); }

  /** Accepts events in any order and with repeats; applies each seq once, in order. */
  push(ev) {
    if (ev.seq <= this.seq || this.terminal) return;
    this.queue.push(ev);
    this.drain();
  }

  drain() {
    if (this.filling) return;
    this.queue.sort((a, b) => a.seq - b.seq);
    while (this.queue.length) {
      const ev = this.queue[0];
      if (ev.seq <= this.seq) { this.queue.shift(); continue; }
      if (ev.seq > this.seq + 1) { this.fill(); return; }
      this.queue.shift();
      this.apply(ev);
    }
  }

  /** A gap in seq (should not happen on one socket): fetch what is missing over REST. */
  async fill() {
    this.filling = true;
    try {
      const { events } = await api(`/api/runs/${this.runId}/events?after_seq=${this.seq}`);
      this.queue.push(...events);
    } catch { /* the next event or resume retries */ }
    this.filling = false;
    const missing = this.queue.length && this.queue.every((e) => e.seq > this.seq + 1);
    if (!missing) this.drain();
  }

  card(agent) {
    let c = this.agents.get(agent);
    if (c) return c;
    const badge = el('span', { class: 'badge', text: 'waiting' });
    const dur = el('span', { class: 'dur' });
    const summary = el('p', { class: 'agent-summary' });
    const steps = el('ul', { class: 'steps' });
    const li = el('li', { class: 'agent', 'data-agent': agent, 'data-state': 'waiting' },
      el('div', { class: 'agent-head' }, el('span', { class: 'agent-name', text: agent }), badge, dur), summary, steps);
    c = { li, badge, dur, summary, steps, state: 'waiting' };
    this.agents.set(agent, c);
    // Keep the supervisor → triage → data → optimization → report order.
    const after = [...this.agentList.children].find((n) => AGENT_ORDER.indexOf(n.dataset.agent) > AGENT_ORDER.indexOf(agent));
    this.agentList.insertBefore(li, after || null);
    return c;
  }

  setAgent(c, state, label) {
    c.state = state;
    c.li.dataset.state = state;
    c.badge.textContent = label;
  }

  apply(ev) {
    this.seq = ev.seq;
    this.firstTs ??= ev.ts;
    this.lastTs = ev.ts;
    switch (ev.type) {
      case 'agent_started': this.setAgent(this.card(ev.agent), 'running', 'running'); break;
      case 'agent_thinking': this.card(ev.agent).steps.append(el('li', { class: 'thinking', text: ev.text })); break;
      case 'tool_executing': {
        const badge = el('span', { class: 'badge', text: 'running' });
        const dur = el('span', { class: 'dur' });
        const li = el('li', { class: 'tool', 'data-state': 'running', 'data-tool': ev.tool },
          el('div', { class: 'tool-head' }, el('code', { text: ev.tool }), badge, dur),
          el('code', { class: 'args', 'aria-label': 'arguments', text: JSON.stringify(ev.args ?? {}) }));
        this.card(ev.agent).steps.append(li);
        this.tools.set(ev.tool_call_id, { li, badge, dur });
        break;
      }
      case 'tool_completed': {
        const t = this.tools.get(ev.tool_call_id);
        if (!t) break;
        t.li.dataset.state = ev.ok ? 'ok' : 'error';
        t.badge.textContent = ev.ok ? 'done' : 'failed';
        t.dur.textContent = took(ev);
        if (ev.ok) {
          t.li.append(el('details', { class: 'result' }, el('summary', { text: 'Result' }), el('pre', { text: pretty(ev.result) })));
          if (ev.tool === 'find_savings' && ev.result?.recommendations) this.onSavings?.(ev.result.recommendations, ev.ts);
          if (ev.tool === 'query_usage' && ev.result?.daily) this.onUsage?.(ev.result, ev.ts);
        } else {
          t.li.append(el('p', { class: 'err', text: ev.error || 'failed' }));
        }
        break;
      }
      case 'agent_completed': {
        const c = this.card(ev.agent);
        this.setAgent(c, 'done', 'done');
        c.dur.textContent = took(ev);
        c.summary.textContent = ev.summary || '';
        break;
      }
      case 'response_delta':
        this.answerId = ev.message_id;
        this.text += ev.text;
        this.announce?.(ev.text);
        this.scheduleRender();
        break;
      case 'final_response':
        this.answerId = ev.message_id;
        this.text = ev.text;
        this.suggestions = ev.suggestions || [];
        this.finish(ev, 'completed', 'Done', '');
        break;
      case 'run_failed': this.finish(ev, 'failed', 'Failed', `The run failed (${ev.code}): ${ev.message}`); break;
      case 'run_cancelled': this.finish(ev, 'cancelled', 'Stopped', 'Stopped.'); break;
      case 'run_timed_out':
        if ((ev.partial_text || '').length > this.text.length) this.text = ev.partial_text;
        this.finish(ev, 'timed_out', 'Timed out', 'The run took too long and was ended.');
        break;
      case 'run_interrupted':
        if ((ev.partial_text || '').length > this.text.length) this.text = ev.partial_text;
        this.finish(ev, 'interrupted', 'Interrupted', 'The server stopped before the run finished.');
        break;
      default: break;
    }
  }

  finish(ev, state, label, message) {
    this.terminal = ev.type;
    clearInterval(this.ticker);
    this.root.dataset.state = state;
    this.state.textContent = label;
    this.end.textContent = message && this.text && state !== 'completed' ? `${message} The answer above is partial.` : message;
    for (const c of this.agents.values()) {
      if (c.state === 'running') this.setAgent(c, state === 'completed' ? 'done' : 'stopped', state === 'completed' ? 'done' : label.toLowerCase());
    }
    for (const t of this.tools.values()) {
      if (t.li.dataset.state === 'running') { t.li.dataset.state = 'error'; t.badge.textContent = 'not finished'; }
    }
    if (state === 'completed') {
      this.details.open = false;
      this.state.textContent = `Done · ${this.agents.size} agents · ${this.tools.size} tool calls`;
    }
    this.tick();
    this.render();
    this.answer.setAttribute('aria-busy', 'false');
    this.updateActions();
    if (message) this.announce?.(message);
  }

  tick() {
    if (this.firstTs == null) return;
    const end = this.terminal ? this.lastTs : Math.max(this.lastTs, Date.now());
    this.time.textContent = `total ${seconds(end - this.firstTs)}`;
  }

  /** Markdown is re-rendered at most once a frame, and less often when rendering gets slow. */
  scheduleRender() {
    if (this.renderPending) return;
    this.renderPending = true;
    const wait = Math.max(0, this.lastRender + this.renderCost * 4 - performance.now());
    setTimeout(() => requestAnimationFrame(() => { this.renderPending = false; this.render(); }), wait);
  }

  /** Renders the answer so far, in slices of about 6 ms; `data-length` tells how much is on screen. */
  render() {
    const t0 = performance.now();
    const done = this.markdown.update(this.text, 6);
    if (done) this.answer.dataset.length = String(this.text.length);
    if (done && this.terminal && this.suggestions.length && this.next.hidden) this.showNext();
    this.lastRender = performance.now();
    this.renderCost = Math.min(this.lastRender - t0, 50);
    if (!done) { this.renderPending = false; this.scheduleRender(); }
  }

  /** The questions to ask next, as buttons that ask them in this thread (in place of the
   *  answer's own "Ask next" list, which is there for readers of the plain text). */
  showNext() {
    for (const strong of this.answer.querySelectorAll('p > strong')) {
      const p = strong.parentElement;
      if (strong.textContent !== 'Ask next' || p.textContent !== 'Ask next' || p.nextElementSibling?.tagName !== 'UL') continue;
      p.nextElementSibling.remove();
      p.remove();
    }
    for (const q of this.suggestions) {
      const b = el('button', { type: 'button', class: 'suggestion', text: q });
      b.addEventListener('click', () => this.onAsk?.(q, this.threadId));
      this.next.append(b);
    }
    this.next.hidden = false;
  }

  dispose() { clearInterval(this.ticker); }
}

/** Threads, transcript and composer. */
export class Chat {
  constructor(conn, { onSavings, onUsage }) {
    this.conn = conn;
    this.onSavings = onSavings;
    this.onUsage = onUsage;
    this.runs = new Map();          // run_id → RunView (every run seen this session)
    this.pending = new Map();       // client_message_id → { frame, bubble }
    this.inbox = [];                // run events not applied yet
    this.inboxAt = 0;
    this.draining = false;
    this.threadId = localStorage.getItem(THREAD_KEY) || null;
    this.threads = [];
    this.org = { id: '', name: '' }; // the organization picked in the header ('' = personal)
    this.shared = [];               // threads others shared with that organization
    this.viewing = null;            // the shared thread open, read only (null: one's own)
    this.followTimer = null;
    this.tree = null;               // the open thread's messages and runs (every branch)
    this.choice = new Map();        // fork → index of the branch shown
    this.shownLast = null;          // the last message of the branch shown: a message sent follows it
    this.editing = null;            // { id } of the user message being edited
    this.loadToken = 0;
    this.epoch = 0;
    this.input = $('composer-input');
    this.transcript = $('transcript');
    this.welcome = $('welcome');
    this.notice = $('notice');
    this.live = $('sr-live');
    this.stick = true;
    this.transcript.addEventListener('scroll', () => {
      const t = this.transcript;
      this.stick = t.scrollHeight - t.scrollTop - t.clientHeight < 60;
    });
    // Markdown renders after a frame: keep following while content grows.
    new MutationObserver(() => this.scroll()).observe(this.transcript, { childList: true, subtree: true, characterData: true });

    $('composer').addEventListener('submit', (e) => { e.preventDefault(); this.send(); });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.send(); }
      if (e.key === 'Escape' && this.editing) { e.preventDefault(); this.cancelEdit(); }
    });
    this.input.addEventListener('input', () => this.updateCounter());
    $('stop').addEventListener('click', () => this.stop());
    $('new-chat').addEventListener('click', () => this.newChat());
    $('share').addEventListener('click', () => this.toggleShare());
    for (const b of document.querySelectorAll('.suggestion')) b.addEventListener('click', () => { this.input.value = b.textContent; this.send(); });
  }

  announce(text) {
    // Screen readers get streamed text as it arrives, in one polite live region.
    this.live.append(document.createTextNode(text));
    if (this.live.textContent.length > 4000) this.live.textContent = text;
  }

  showNotice(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  frameFor(text) {
    const frame = { type: 'user_message', text, thread_id: this.threadId || undefined, client_message_id: crypto.randomUUID() };
    if (this.threadId && this.editing) frame.edit_of = this.editing.id;
    else if (this.threadId && this.shownLast) frame.parent_id = this.shownLast;
    return frame;
  }

  updateCounter() {
    const bytes = utf8.encode(JSON.stringify(this.frameFor(this.input.value))).length;
    const c = $('counter');
    c.classList.toggle('over', bytes > FRAME_LIMIT);
    c.textContent = bytes > FRAME_LIMIT * 0.75 ? `${bytes.toLocaleString()} / ${FRAME_LIMIT.toLocaleString()} bytes` : '';
    return bytes;
  }

  activeRun() {
    return [...this.runs.values()].find((r) => r.active && !r.shared && r.threadId === this.threadId && r.root.isConnected);
  }

  updateStop() {
    const run = this.activeRun();
    $('stop').hidden = !run;
  }

  send() {
    const text = this.input.value;
    if (this.viewing) { this.showNotice('This thread is shared with you to read: start a new chat to ask.'); return; }
    if (!text.trim()) { this.showNotice('Type a message first.'); return; }
    if (this.activeRun()) { this.showNotice('This thread is still answering: wait for it or press Stop.'); return; }
    const frame = this.frameFor(text);
    const bytes = utf8.encode(JSON.stringify(frame)).length;
    if (bytes > FRAME_LIMIT) { this.showNotice(`Too long: the message is ${bytes.toLocaleString()} bytes and the limit is ${FRAME_LIMIT.toLocaleString()}. Shorten it.`); return; }
    if (!this.conn.send(frame)) { this.showNotice('Not connected: your message is kept here; send it again once the status says connected.'); return; }
    this.showNotice('');
    // An edit is drawn with its new branch once accepted; a message, right away.
    const bubble = frame.edit_of ? null : this.userBubble(text);
    this.pending.set(frame.client_message_id, { frame, bubble });
    this.editing = null;
    this.input.value = '';
    this.updateCounter();
  }

  /** A message of the branch shown, back in the composer: sending asks it on a new branch. */
  edit(id, text) {
    if (this.activeRun()) { this.showNotice('This thread is still answering: wait for it or press Stop.'); return; }
    this.editing = { id };
    this.input.value = text;
    this.updateCounter();
    this.input.focus();
    this.showNotice('Editing your message: Send asks it again on a new branch; the original and its answer stay. Esc cancels.');
  }

  cancelEdit() {
    this.editing = null;
    this.input.value = '';
    this.updateCounter();
    this.showNotice('');
  }

  /** Asks the message an ended run answered again: a new run, its answer beside the others. */
  regenerate(run) {
    if (this.activeRun()) { this.showNotice('This thread is still answering: wait for it or press Stop.'); return; }
    const frame = { type: 'user_message', thread_id: run.threadId, regenerate: run.userMessageId, client_message_id: crypto.randomUUID() };
    if (!this.conn.send(frame)) { this.showNotice('Not connected: press Regenerate again once the status says connected.'); return; }
    this.showNotice('');
    this.pending.set(frame.client_message_id, { frame, bubble: null });
  }

  /** A suggested question, clicked: asked in the thread of the answer that suggested it. */
  askNext(text, threadId) {
    if (threadId && threadId !== this.threadId) return;
    this.input.value = text;
    this.send();
  }

  stop() {
    const run = this.activeRun();
    if (run && !this.conn.send({ type: 'stop_agent', run_id: run.runId })) this.showNotice('Not connected: Stop is sent once the page reconnects; press it again then.');
  }

  userBubble(text, id) {
    this.welcome.hidden = true;
    const bubble = el('div', { class: 'bubble md' });
    setMarkdown(bubble, text);
    const tools = el('div', { class: 'msg-tools' });
    const msg = el('div', { class: 'msg user', 'aria-label': 'You said' }, el('span', { class: 'sr-only', text: 'You: ' }), bubble, tools);
    if (id) this.editable(msg, id, text);
    this.transcript.append(msg);
    this.stick = true;
    this.scroll();
    return msg;
  }

  /** An "Edit" button on a user message whose id is known. */
  editable(msg, id, text) {
    msg.dataset.messageId = id;
    const b = el('button', { type: 'button', class: 'edit', text: 'Edit', 'aria-label': 'Edit this message' });
    b.addEventListener('click', () => this.edit(id, text));
    msg.querySelector('.msg-tools').append(b);
  }

  /** ‹ 2 / 3 ›: which of the versions at a fork is shown. */
  switcher(key, index, count, label) {
    const go = (to) => { this.choice.set(key, to); this.renderBranch(); };
    const prev = el('button', { type: 'button', class: 'prev', text: '‹', 'aria-label': `Previous ${label}` });
    const next = el('button', { type: 'button', class: 'next-version', text: '›', 'aria-label': `Next ${label}` });
    if (index === 0) prev.disabled = true;
    if (index === count - 1) next.disabled = true;
    prev.addEventListener('click', () => go(index - 1));
    next.addEventListener('click', () => go(index + 1));
    return el('span', { class: 'branch', role: 'group', 'aria-label': label }, prev, el('span', { class: 'branch-pos', text: `${index + 1} / ${count}` }), next);
  }

  /** Follows the newest content unless the reader scrolled up. */
  scroll() {
    if (!this.stick || this.scrollPending) return;
    // Once a frame: reading scrollHeight forces a layout.
    this.scrollPending = true;
    requestAnimationFrame(() => {
      this.scrollPending = false;
      if (this.stick) this.transcript.scrollTop = this.transcript.scrollHeight;
    });
  }

  newRun(runId, threadId, live) {
    let run = this.runs.get(runId);
    if (!run) {
      run = new RunView(runId, threadId, {
        live,
        onSavings: this.onSavings,
        onUsage: this.onUsage,
        announce: (t) => this.announce(t),
        onAsk: (text, thread) => this.askNext(text, thread),
        onRegenerate: (r) => this.regenerate(r),
      });
      this.runs.set(runId, run);
    }
    return run;
  }

  /** Called on every (re)connection. */
  onReady() {
    // Messages whose acceptance we never saw: resend with the same id (idempotent).
    for (const { frame: f } of this.pending.values()) this.conn.send(f);
    this.resumeAll();
    this.loadThreads().then(() => {
      if (!this.openedOnce) { this.openedOnce = true; if (this.threadId) this.openThread(this.threadId); }
    });
  }

  resumeAll() {
    for (const run of this.runs.values()) if (run.active && !run.shared) this.conn.send({ type: 'resume', run_id: run.runId, after_seq: run.seq });
  }

  onFrame(f) {
    if (f.type === 'message_accepted') return this.accepted(f);
    if (f.type === 'error') return this.refused(f);
    if (f.type === 'server_shutdown') return this.showNotice('The server is restarting; the page will reconnect and resume.');
    if (f.type === 'pong') return;
    if (f.run_id && typeof f.seq === 'number') {
      this.inbox.push(f);
      this.kick();
    }
  }

  /**
   * Run events are applied in frames with a time budget, so a burst of them never
   * blocks the page for long: what does not fit waits for the next frame.
   */
  kick() {
    if (this.draining) return;
    this.draining = true;
    const next = () => (document.hidden ? setTimeout(() => this.drainInbox(), 0) : requestAnimationFrame(() => this.drainInbox()));
    this.nextDrain = next;
    next();
  }

  drainInbox() {
    const t0 = performance.now();
    let ended = false;
    while (this.inboxAt < this.inbox.length && performance.now() - t0 < 8) {
      const f = this.inbox[this.inboxAt++];
      const run = this.runs.get(f.run_id) || this.newRun(f.run_id, f.thread_id, true);
      run.push(f);
      if (!run.root.isConnected && f.thread_id === this.threadId) this.transcript.append(run.root);
      if (TERMINAL.has(f.type)) {
        ended = true;
        // The branch shown now ends with this run: its answer, or the message it answered.
        if (run.threadId === this.threadId && run.root.isConnected) this.shownLast = (run.text && run.answerId) || run.userMessageId || this.shownLast;
      }
    }
    if (this.inboxAt >= this.inbox.length) { this.inbox = []; this.inboxAt = 0; }
    this.scroll();
    if (ended) { this.updateStop(); this.loadThreads(); }
    if (this.inbox.length) this.nextDrain(); else this.draining = false;
  }

  accepted(f) {
    const p = this.pending.get(f.client_message_id);
    this.pending.delete(f.client_message_id);
    const isNew = this.threadId !== f.thread_id;
    if (isNew && p && !this.threadId) this.setThread(f.thread_id);
    const run = this.newRun(f.run_id, f.thread_id, true);
    run.answers(f.message_id);
    if (f.thread_id === this.threadId && !p?.frame.regenerate) this.shownLast = f.message_id;
    if (p && (p.frame.edit_of || p.frame.regenerate) && f.thread_id === this.threadId) {
      // A new branch: the thread is drawn again, showing it.
      this.openThread(f.thread_id);
      this.loadThreads();
      return;
    }
    if (p?.bubble && !p.bubble.dataset.messageId) this.editable(p.bubble, f.message_id, p.frame.text);
    if (f.thread_id === this.threadId && !run.root.isConnected) {
      if (p?.bubble) p.bubble.after(run.root); else this.transcript.append(run.root);
    }
    this.updateStop();
    this.scroll();
    this.loadThreads();
  }

  refused(f) {
    const p = f.client_message_id && this.pending.get(f.client_message_id);
    const reasons = {
      message_too_large: 'Too long for the server',
      rate_limited: 'Sending too fast',
      thread_busy: 'This thread is still answering: wait for it or press Stop',
      not_found: 'That thread or run no longer exists',
      shutting_down: 'The server is restarting and takes no new messages right now',
      invalid_field: 'The message was refused',
      internal: 'The server failed to accept it; try again',
    };
    const why = `${reasons[f.code] || 'Refused'} (${f.code}): ${f.message}`;
    if (p) {
      this.pending.delete(f.client_message_id);
      p.bubble?.remove();
      if (p.frame.edit_of && !this.input.value) this.editing = { id: p.frame.edit_of };
      if (!this.input.value && p.frame.text) { this.input.value = p.frame.text; this.updateCounter(); }
      this.showNotice(`Not sent. ${why}`);
    } else {
      this.showNotice(why);
    }
  }

  setThread(id, shared = null) {
    this.threadId = id;
    this.viewing = id ? shared : null;
    if (id && !shared) localStorage.setItem(THREAD_KEY, id); else if (!id) localStorage.removeItem(THREAD_KEY);
    $('chat-view').classList.toggle('read-only', !!this.viewing);
    this.renderThreads();
  }

  setOrganization(id, name) {
    if (id === this.org.id && name === this.org.name) return;
    const was = this.org.id;
    this.org = { id, name };
    this.shared = [];
    if (this.viewing && id !== was) this.newChat();
    this.loadThreads();
  }

  async loadThreads() {
    const epoch = this.epoch;
    const org = this.org.id;
    try {
      const [{ threads }, shared] = await Promise.all([
        api('/api/threads'),
        org ? api(`/api/orgs/${encodeURIComponent(org)}/threads`).then((r) => r.threads, () => []) : [],
      ]);
      if (epoch !== this.epoch || org !== this.org.id) return; // another identity or organization since
      this.threads = threads;
      const own = new Set(threads.map((t) => t.id));
      this.shared = shared.filter((t) => !own.has(t.id));
      this.renderThreads();
    } catch (e) {
      if (e.status !== 401) this.showNotice(`Could not load threads: ${e.message}`);
    }
  }

  threadButton(t, shared) {
    const b = el('button', { type: 'button', title: t.title, 'data-thread-id': t.id },
      el('span', { class: 'thread-title', text: t.title || 'Untitled' }),
      shared ? el('span', { class: 'thread-by', text: `by ${t.owner_name || t.owner}` })
        : t.shared_with ? el('span', { class: 'thread-shared', text: 'shared', title: 'Members of an organization can read it' }) : null);
    if (t.id === this.threadId) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', () => { this.openThread(t.id, shared ? t : null); document.dispatchEvent(new CustomEvent('apex:thread-opened')); });
    return el('li', {}, b);
  }

  renderThreads() {
    const items = this.threads.map((t) => this.threadButton(t, false));
    $('threads').replaceChildren(...items);
    $('threads-empty').hidden = items.length > 0;
    $('shared-box').hidden = !this.org.id;
    $('shared-title').textContent = `Shared in ${this.org.name}`;
    $('shared-threads').replaceChildren(...this.shared.map((t) => this.threadButton(t, true)));
    $('shared-empty').hidden = this.shared.length > 0;
    this.renderThreadBar();
  }

  renderThreadBar() {
    const bar = $('thread-bar');
    const text = $('thread-bar-text');
    const button = $('share');
    if (this.viewing) {
      const t = this.viewing;
      text.textContent = `Shared by ${t.owner_name || t.owner} in ${this.org.name || 'an organization'} · read only`;
      button.hidden = true;
      bar.hidden = false;
      return;
    }
    const t = this.threadId && this.threads.find((x) => x.id === this.threadId);
    bar.hidden = !t || (!t.shared_with && !this.org.id);
    if (bar.hidden) return;
    button.hidden = false;
    if (t.shared_with) {
      text.textContent = t.shared_with === this.org.id ? `Shared with ${this.org.name}: its members can read this thread.` : 'Shared with another of your organizations.';
      button.textContent = 'Stop sharing';
    } else {
      text.textContent = 'Only you can read this thread.';
      button.textContent = `Share with ${this.org.name}`;
    }
  }

  async toggleShare() {
    const t = this.threads.find((x) => x.id === this.threadId);
    if (!t || this.viewing) return;
    const path = `/api/threads/${t.id}/share`;
    try {
      if (t.shared_with) await api(path, { method: 'DELETE' });
      else if (this.org.id) await api(path, { method: 'PUT', json: { org: this.org.id } });
      this.showNotice(t.shared_with ? 'This thread is yours alone again.' : `Shared: the members of ${this.org.name} can read this thread.`);
    } catch (e) {
      this.showNotice(`Could not change who reads this thread: ${e.message}`);
    }
    await this.loadThreads();
  }

  followShared() {
    clearTimeout(this.followTimer);
    const runs = [...this.runs.values()].filter((r) => r.shared && r.active && r.threadId === this.threadId);
    if (!this.viewing || !runs.length) return;
    this.followTimer = setTimeout(async () => {
      await Promise.all(runs.map((r) => r.fill()));
      this.scroll();
      this.followShared();
    }, 1500);
  }

  /** Forgets everything shown: another identity takes over the page. */
  reset() {
    this.tree = null;
    this.shownLast = null;
    for (const run of this.runs.values()) run.dispose();
    this.runs.clear();
    this.pending.clear();
    this.inbox = [];
    this.inboxAt = 0;
    this.threads = [];
    this.shared = [];
    clearTimeout(this.followTimer);
    this.openedOnce = false;
    this.epoch += 1;
    this.loadToken += 1;
    this.setThread(null);
    this.clearTranscript();
    this.welcome.hidden = false;
    this.live.textContent = '';
    this.showNotice('');
    this.updateStop();
  }

  clearTranscript() {
    for (const n of [...this.transcript.children]) if (n !== this.welcome) n.remove();
  }

  newChat() {
    this.editing = null;
    this.tree = null;
    this.shownLast = null;
    this.setThread(null);
    this.clearTranscript();
    this.welcome.hidden = false;
    this.showNotice('');
    this.updateStop();
    this.input.focus();
    document.dispatchEvent(new CustomEvent('apex:thread-opened'));
  }

  /** History over REST; each run drawn from its stored events, live ones resumed (or, in
   *  a thread shared with the user, `shared`, followed). */
  async openThread(id, shared = null) {
    const token = ++this.loadToken;
    this.setThread(id, shared);
    this.showNotice('');
    this.editing = null;
    let messages, runs;
    try {
      ({ messages, runs } = await api(`/api/threads/${id}/messages`));
    } catch (e) {
      if (token !== this.loadToken) return;
      if (e.status === 404) { this.newChat(); return; }
      this.showNotice(`Could not open the thread: ${e.message}`);
      return;
    }
    const runIds = runs.map((r) => r.id);
    const histories = await Promise.all(runIds.map((r) => this.runs.has(r) ? null : api(`/api/runs/${r}/events`).catch(() => null)));
    if (token !== this.loadToken) return;
    runIds.forEach((r, i) => {
      if (!histories[i]) return;
      const run = this.newRun(r, id, false);
      run.shared = !!shared;
      for (const ev of histories[i].events) run.push(ev);
    });
    this.tree = { messages, runs };
    this.choice = new Map();
    this.renderBranch();
    this.transcript.scrollTop = this.transcript.scrollHeight;
    this.updateStop();
    if (this.conn.connected) this.resumeAll();
    this.followShared();
  }

  /**
   * Draws one branch of the thread: from its first message, at each fork the version
   * chosen with a switch, by default the one on the way to the thread's latest message
   * (where a message sent now goes).
   */
  renderBranch() {
    const { messages, runs } = this.tree;
    const children = new Map();
    for (const m of messages) {
      const k = m.parent_id || '';
      if (!children.has(k)) children.set(k, []);
      children.get(k).push(m);
    }
    const attempts = new Map();
    for (const r of runs) {
      if (!attempts.has(r.user_message_id)) attempts.set(r.user_message_id, []);
      attempts.get(r.user_message_id).push(r);
    }
    const byId = new Map(messages.map((m) => [m.id, m]));
    // The thread's latest: its newest message, or a newer run (a regenerate without an answer yet).
    let tip = messages[messages.length - 1];
    const newestRun = runs[runs.length - 1];
    const tipRun = newestRun && (!tip || newestRun.created_at > tip.created_at) ? newestRun.id : null;
    if (tipRun) tip = byId.get(newestRun.user_message_id);
    const onLatest = new Set();
    for (let m = tip; m && !onLatest.has(m.id); m = byId.get(m.parent_id)) onLatest.add(m.id);
    const pick = (key, options, isLatest) => {
      const chosen = this.choice.get(key);
      if (chosen != null && chosen < options.length) return chosen;
      const i = options.findIndex(isLatest);
      return i >= 0 ? i : options.length - 1;
    };
    for (const run of this.runs.values()) if (run.threadId === this.threadId) run.setSwitch(null);
    this.clearTranscript();
    this.welcome.hidden = messages.length > 0;
    let at = '';
    let last = null;
    for (let depth = 0; depth < messages.length; depth++) {
      const versions = (children.get(at) || []).filter((m) => m.role === 'user');
      if (!versions.length) break;
      const vi = pick(`m:${at}`, versions, (m) => onLatest.has(m.id));
      const u = versions[vi];
      const msg = this.userBubble(u.content, u.id);
      if (versions.length > 1) msg.querySelector('.msg-tools').prepend(this.switcher(`m:${at}`, vi, versions.length, 'version of this message'));
      last = u.id;
      let answer = null;
      const tries = attempts.get(u.id) || [];
      if (tries.length) {
        const answerOf = new Map((children.get(u.id) || []).filter((m) => m.role === 'assistant').map((m) => [m.run_id, m]));
        const ri = pick(`r:${u.id}`, tries, (r) => r.id === tipRun || onLatest.has(answerOf.get(r.id)?.id));
        const run = this.runs.get(tries[ri].id);
        if (run) {
          run.answers(u.id);
          if (tries.length > 1) run.setSwitch(this.switcher(`r:${u.id}`, ri, tries.length, 'answer to this message'));
          run.render();
          this.transcript.append(run.root);
          if (run.active) run.details.open = true;
        }
        answer = answerOf.get(tries[ri].id);
        if (answer) last = answer.id;
      }
      at = answer ? answer.id : u.id;
    }
    this.shownLast = last;
    this.updateStop();
  }
}
