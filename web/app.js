// Wires the page: connection and status, chat, costs, theme, sidebar and account dialog.
import { Connection, identity, tokenFromFragment } from './connection.js';
import { Chat } from './chat.js';
import { Costs } from './costs.js';

const $ = (id) => document.getElementById(id);

// Theme: the saved choice, else the system's.
const THEME_KEY = 'apex.theme';
function applyTheme(t) {
  document.documentElement.dataset.theme = t;
  const dark = t === 'dark';
  $('theme').setAttribute('aria-pressed', String(dark));
  $('theme').title = dark ? 'Dark theme (press for light)' : 'Light theme (press for dark)';
}
applyTheme(localStorage.getItem(THEME_KEY) || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'));
$('theme').addEventListener('click', () => {
  const t = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
  localStorage.setItem(THEME_KEY, t);
  applyTheme(t);
  costs.draw();
});

tokenFromFragment();

const costs = new Costs();
let chat;
const conn = new Connection({
  onStatus: (state, text) => {
    $('status').dataset.state = state;
    $('status-text').textContent = text;
  },
  onReady: (frame) => chat.onReady(frame),
  onFrame: (frame) => chat.onFrame(frame),
  onClosed: () => chat.updateStop(),
  onAuthProblem: (message, ask) => {
    if (ask) openAccount(message); else chat.showNotice(message);
  },
});
chat = new Chat(conn, {
  onSavings: (recs, ts) => costs.setSavings(recs, ts),
  onUsage: (usage, ts) => costs.setAnalysis(usage, ts),
});

// Views.
function showView(name) {
  const costsOn = name === 'costs';
  $('chat-view').hidden = costsOn;
  $('costs-view').hidden = !costsOn;
  $('tab-chat').setAttribute('aria-pressed', String(!costsOn));
  $('tab-costs').setAttribute('aria-pressed', String(costsOn));
  if (costsOn) costs.show(); else costs.hide();
}
$('tab-chat').addEventListener('click', () => showView('chat'));
$('tab-costs').addEventListener('click', () => showView('costs'));

// Sidebar on narrow screens.
const sidebar = $('sidebar');
function setSidebar(open) {
  sidebar.classList.toggle('open', open);
  $('menu').setAttribute('aria-expanded', String(open));
}
$('menu').addEventListener('click', () => setSidebar(!sidebar.classList.contains('open')));
document.addEventListener('apex:thread-opened', () => { setSidebar(false); showView('chat'); });
document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && sidebar.classList.contains('open')) { setSidebar(false); $('menu').focus(); } });

// Account: who am I, paste a token, or start over as a new demo user.
const dialog = $('account-dialog');
function openAccount(error) {
  $('account-error').textContent = error || '';
  $('account-error').hidden = !error;
  $('token-input').value = '';
  if (!dialog.open) dialog.showModal();
}
$('account').addEventListener('click', () => openAccount(''));
$('account-close').addEventListener('click', () => dialog.close());
$('account-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('token-input').value.trim();
  if (!t) { openAccount('Paste a token first.'); return; }
  switchIdentity(t);
});
$('demo-identity').addEventListener('click', () => switchIdentity(''));
function switchIdentity(token) {
  identity.set(token, false);
  localStorage.removeItem('apex.thread');
  localStorage.removeItem('apex.savings');
  localStorage.removeItem('apex.analysis');
  dialog.close();
  location.reload();
}

conn.start();
$('composer-input').focus();
