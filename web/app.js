// Wires the page: connection and status, chat, costs, theme, sidebar, and the account
// dialog (sign-in with a local account and its sessions and API keys, a pasted token, or
// a new demo identity).
import { Connection, identity, session, organization, api, authConfig, takeFragment } from './connection.js';
import { Chat, el } from './chat.js';
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

let invite = takeFragment();
// The user id of the identity on the page (from the socket's `ready`).
let me = '';

const costs = new Costs();
let chat;
const conn = new Connection({
  onStatus: (state, text) => {
    $('status').dataset.state = state;
    $('status-text').textContent = text;
  },
  onReady: (frame) => { me = frame.user_id; showWho(frame); chat.onReady(frame); loadOrganizations(frame); },
  onFrame: (frame) => chat.onFrame(frame),
  onClosed: () => chat.updateStop(),
  onAuthProblem: (message, ask) => {
    if (ask) openAccount(message); else chat.showNotice(message);
  },
  onSignedOut: () => endSession(),
});
session.onEnded = () => endSession();
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

// Who is using the page. `config` is what the server offers (GET /api/auth/config); null
// for a server without accounts, which leaves tokens and demo identities only.
let config = null;
// Nothing of anyone's is on the page (yet, or any more): a sign-in starts the chat in
// place. Otherwise it reloads, so nothing of the previous identity stays on screen.
let blank = true;
// Signed out from elsewhere in demo mode: closing the dialog makes a new demo user.
let demoOnClose = false;
let mode = 'signin';

/** Demo mode off, accounts on, and no identity: nothing works until someone signs in. */
const mustSignIn = () => !!config?.accounts && config.demo_mode === false && !identity.token;
const canSignUp = () => config?.signup === 'open' || (config?.signup === 'invite' && !!invite);

function showWho(frame = null) {
  const u = session.user;
  const name = u?.name || frame?.user_id || '';
  $('account-user').textContent = u ? `Signed in as ${u.name} (${u.role}).`
    : name ? `Signed in as ${name}${frame?.demo ? ' (demo identity)' : ''}.`
      : config?.accounts ? 'Not signed in.' : '';
  $('account').setAttribute('aria-label', name ? `Account: ${name}` : 'Account and token');
  $('account-name').textContent = u?.name || '';
}

async function boot() {
  config = await authConfig();
  setMode(invite ? 'signup' : 'signin');
  // A token the user pasted or followed a link with wins over a remembered session.
  if (config?.accounts && !identity.hasChosenToken && await session.refresh() === 'ok') {
    if (invite) chat.showNotice(`You are signed in as ${session.user.name}. Sign out first to create an account with the invitation.`);
    invite = '';
    startChat();
    return;
  }
  const ssoError = sessionStorage.getItem('apex.signin_error');
  sessionStorage.removeItem('apex.signin_error');
  if (mustSignIn()) { conn.status('offline', 'Signed out'); openSignIn(ssoError || ''); return; }
  startChat();
  if (invite && canSignUp()) openSignIn('', 'signup');
  else if (ssoError && config?.accounts) openSignIn(ssoError);
}

function startChat() {
  blank = false;
  showWho();
  conn.start();
  $('composer-input').focus();
}

/** Forgets what the page kept of the previous identity, like a new user. */
function forgetUserData() {
  organization.forget();
  localStorage.removeItem('apex.thread');
  localStorage.removeItem('apex.savings');
  localStorage.removeItem('apex.analysis');
}

/** The server ended this page's session: signed out or revoked elsewhere, or the account
 *  was disabled. Reconnecting would only be refused, so the page asks for a sign-in. */
function endSession() {
  conn.stop();
  session.clear();
  identity.set('', false);
  forgetUserData();
  chat.reset();
  costs.reset();
  blank = true;
  demoOnClose = !!config?.demo_mode;
  showWho();
  openSignIn('You were signed out.');
}

// Organizations: whose usage the answers and the charts read. Once connected, the user's
// organizations are listed; the picker shows when there is more than their own space, and
// the last choice is taken again if they still belong to it. An invitation link
// (`#join=CODE`) is used once signed in, and selects the organization it joined.
let orgsLoading = null;
async function loadOrganizations(frame) {
  if (frame.demo) { showOrganizations([]); return; }
  if (orgsLoading) return;
  orgsLoading = (async () => {
    const join = sessionStorage.getItem('apex.join');
    if (join) {
      sessionStorage.removeItem('apex.join');
      try {
        const joined = await api('/api/orgs/join', { method: 'POST', json: { code: join } });
        organization.choose(joined.id);
        organization.id = '';
        chat.showNotice(`You joined ${joined.name} as ${joined.role}.`);
      } catch (e) {
        chat.showNotice(`The invitation could not be used: ${e.message}`);
      }
    }
    let list;
    try { list = (await api('/api/orgs')).organizations; } catch { return; }
    const wanted = organization.wanted;
    const known = list.some((o) => !o.personal && o.id === wanted);
    if (wanted && !known) organization.forget();
    showOrganizations(list, known ? wanted : '');
    if ((known ? wanted : '') !== organization.id) useOrganization(known ? wanted : '');
  })().finally(() => { orgsLoading = null; });
}

let orgNames = new Map();
function showOrganizations(list, selected = '') {
  const select = $('org');
  select.replaceChildren(...list.map((o) => el('option', { value: o.personal ? '' : o.id, text: o.personal ? 'Personal' : `${o.name} (${o.role})` })));
  select.value = selected;
  $('org-box').hidden = list.length < 2;
  orgNames = new Map(list.filter((o) => !o.personal).map((o) => [o.id, o.name]));
  chat.setOrganization(selected, orgNames.get(selected) || '');
}

// The account dialog's organizations: each with the caller's role, an admin's invitation
// links (a role to pick, the link shown with Copy), and a form to create one.
async function loadOrgsPanel() {
  let list;
  try { list = (await api('/api/orgs')).organizations; } catch { $('orgs-panel').hidden = true; return null; }
  $('orgs').replaceChildren(...list.filter((o) => !o.personal).map(orgItem));
  $('orgs-panel').hidden = false;
  return list;
}

const ROLES = ['viewer', 'analyst', 'admin'];
function orgItem(o) {
  const id = `org-${o.id.replace(/[^a-z0-9-]/gi, '')}`;
  const text = el('span', { id }, el('strong', { text: o.name }), ` · ${o.role}`);
  const list = el('ul', { class: 'members', 'aria-label': `Members of ${o.name}`, hidden: '' });
  const toggle = el('button', { type: 'button', text: 'Members', 'aria-expanded': 'false', 'aria-label': `Members of ${o.name}` });
  toggle.addEventListener('click', async () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true';
    toggle.setAttribute('aria-expanded', String(open));
    list.hidden = !open;
    if (open) await showMembers(o, list);
  });
  if (o.role !== 'admin') return el('li', {}, text, toggle, list);
  const role = el('select', { 'aria-label': `Role for an invitation to ${o.name}` },
    ...ROLES.map((r) => el('option', { value: r, text: r })));
  const b = el('button', { type: 'button', 'aria-describedby': id, text: 'Invite', 'aria-label': `Invite to ${o.name}` });
  b.addEventListener('click', async () => {
    try {
      const made = await api(`/api/orgs/${encodeURIComponent(o.id)}/invitations`, { method: 'POST', json: { role: role.value } });
      $('invite-link-value').value = `${location.origin}${made.path}`;
      $('invite-link-label').textContent = `Invitation to ${o.name} as ${made.role}`;
      $('invite-link').hidden = false;
      $('invite-link-value').select();
    } catch (e) { showOrgError(`Could not make an invitation: ${e.message}`); }
  });
  return el('li', {}, text, toggle, role, b, list);
}

async function showMembers(o, list) {
  let members;
  try { members = (await api(`/api/orgs/${encodeURIComponent(o.id)}/members`)).members; } catch (e) {
    showOrgError(`Could not list the members of ${o.name}: ${e.message}`);
    return;
  }
  const admin = o.role === 'admin';
  const change = async (request, done) => {
    try {
      await request();
      showOrgError('');
      if (done) await done();
    } catch (e) { showOrgError(e.message); await showMembers(o, list); }
  };
  list.replaceChildren(...members.map((m) => {
    const who = m.name || m.user_id;
    const self = m.user_id === me;
    const path = `/api/orgs/${encodeURIComponent(o.id)}/members/${encodeURIComponent(m.user_id)}`;
    const parts = [el('span', { class: 'member-name', text: self ? `${who} (you)` : who })];
    if (admin) {
      const role = el('select', { 'aria-label': `Role of ${who}` }, ...ROLES.map((r) => el('option', { value: r, text: r })));
      role.value = m.role;
      role.addEventListener('change', () => change(() => api(path, { method: 'PATCH', json: { role: role.value } }),
        () => (self ? loadOrganizationsAgain() : showMembers(o, list))));
      parts.push(role);
    } else {
      parts.push(` · ${m.role}`);
    }
    if (self || admin) {
      const b = el('button', { type: 'button', text: self ? 'Leave' : 'Remove', 'aria-label': self ? `Leave ${o.name}` : `Remove ${who} from ${o.name}` });
      b.addEventListener('click', () => {
        if (!confirm(self ? `Leave ${o.name}? Its usage and shared threads will no longer be yours to read.` : `Remove ${who} from ${o.name}?`)) return;
        change(() => api(path, { method: 'DELETE' }), () => (self ? loadOrganizationsAgain() : showMembers(o, list)));
      });
      parts.push(b);
    }
    return el('li', { 'data-user-id': m.user_id }, ...parts);
  }));
}

async function loadOrganizationsAgain() {
  const list = await loadOrgsPanel();
  if (!list) return;
  const known = list.some((o) => !o.personal && o.id === organization.id);
  showOrganizations(list, known ? organization.id : '');
  if (!known && organization.id) useOrganization('');
}

function showOrgError(message) {
  $('org-error').textContent = message;
  $('org-error').hidden = !message;
}

$('org-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('org-name').value.trim();
  if (!name) { showOrgError('Enter a name.'); $('org-name').focus(); return; }
  try {
    const made = await api('/api/orgs', { method: 'POST', json: { name } });
    showOrgError('');
    $('org-name').value = '';
    // The new organization is picked: its (still empty) usage is what the page reads now.
    const list = await loadOrgsPanel();
    if (!list) return;
    showOrganizations(list, made.id);
    useOrganization(made.id);
  } catch (err) { showOrgError(`Could not create it: ${err.message}`); }
});
$('copy-invite').addEventListener('click', async () => {
  try { await navigator.clipboard.writeText($('invite-link-value').value); } catch { $('invite-link-value').select(); }
});

/** Reads another organization's usage: the socket reconnects for it, the charts reload. */
function useOrganization(id) {
  organization.choose(id);
  chat.setOrganization(id, orgNames.get(id) || '');
  localStorage.removeItem('apex.savings');
  localStorage.removeItem('apex.analysis');
  costs.reset();
  if (!$('costs-view').hidden) costs.refresh();
  conn.start();
}
$('org').addEventListener('change', (e) => {
  useOrganization(e.target.value);
  const name = e.target.selectedOptions[0]?.textContent || 'Personal';
  chat.showNotice(e.target.value ? `Answers and charts now read the usage of ${name}.` : 'Answers and charts now read your own usage.');
});

// The account dialog: the signed-in user and their sessions, or the sign-in form; a
// token to paste; a new demo identity.
const dialog = $('account-dialog');
function openAccount(error) {
  $('account-error').textContent = error || '';
  $('account-error').hidden = !error;
  if (error) $('token-box').open = true;
  $('token-input').value = '';
  renderAccount();
  if (!dialog.open) dialog.showModal();
  const first = session.active ? $('sign-out') : !$('signin-form').hidden && !error ? $('signin-name') : $('token-input');
  if (first.offsetParent) first.focus();
}

function renderAccount() {
  const signedIn = session.active;
  $('session-panel').hidden = !signedIn;
  $('sign-out-bar').hidden = !signedIn;
  $('signin-form').hidden = signedIn || !config?.accounts;
  $('demo-identity').hidden = config?.demo_mode === false;
  $('account-close').hidden = mustSignIn();
  // Where accounts are the way in, a token is the exception: folded away.
  if (!dialog.open) $('token-box').open = !(config?.accounts && config.demo_mode === false);
  if (signedIn) loadSessions();
  // A demo user is anonymous and gone with its token: a key for it would make no sense.
  if (identity.token && !identity.isDemoToken) loadKeys(); else hideKeys();
  if (identity.token && !identity.isDemoToken) loadOrgsPanel(); else $('orgs-panel').hidden = true;
}

function openSignIn(message, m = mode) {
  if (!config?.accounts) { openAccount(message); return; }
  setMode(m);
  showSignInError(message);
  openAccount('');
  $('signin-name').focus();
}

$('account').addEventListener('click', () => openAccount(''));
$('account-close').addEventListener('click', () => dialog.close());
// Escape: the sign-in cannot be dismissed while it is the only way in. Chrome lets a
// second Escape through without a cancel event, so `close` opens it again.
dialog.addEventListener('cancel', (e) => { if (mustSignIn()) e.preventDefault(); });
dialog.addEventListener('close', () => {
  forgetNewKey();
  // An invitation link admits whoever has it: not left on screen.
  $('invite-link').hidden = true;
  $('invite-link-value').value = '';
  if (mustSignIn()) { dialog.showModal(); $('signin-name').focus(); return; }
  if (demoOnClose && !session.active) { demoOnClose = false; startChat(); }
});
$('account-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('token-input').value.trim();
  if (!t) { openAccount('Paste a token first.'); return; }
  switchIdentity(t);
});
$('demo-identity').addEventListener('click', () => switchIdentity(''));
async function switchIdentity(token) {
  // A signed-in session would sign the page back in on reload: end it first.
  if (session.active) await api('/api/auth/logout', { method: 'POST', json: {} }).catch(() => {});
  session.clear();
  identity.set(token, false);
  forgetUserData();
  demoOnClose = false;
  dialog.close();
  location.reload();
}

// Sign in, or create an account (open sign-up, or an invitation link).
function setMode(m) {
  mode = m === 'signup' && canSignUp() ? 'signup' : 'signin';
  const up = mode === 'signup';
  $('signin-title').textContent = up ? 'Create account' : 'Sign in';
  $('signin-submit').textContent = up ? 'Create account' : 'Sign in';
  $('signin-switch').textContent = up ? 'I have an account' : 'Create an account';
  $('signin-switch').hidden = !canSignUp();
  $('signin-password').autocomplete = up ? 'new-password' : 'current-password';
  $('signin-hint').hidden = !up;
  $('signin-note').hidden = !(up && invite);
  // The identity provider a team signs in with, when the server has one.
  $('sso-bar').hidden = up || !config?.oidc;
  if (config?.oidc) $('sso').textContent = `Sign in with ${config.oidc.name}`;
}
$('signin-switch').addEventListener('click', () => {
  setMode(mode === 'signup' ? 'signin' : 'signup');
  showSignInError('');
  $('signin-name').focus();
});

function showSignInError(message, field = null) {
  $('signin-error').textContent = message;
  $('signin-error').hidden = !message;
  for (const f of [$('signin-name'), $('signin-password')]) f.toggleAttribute('aria-invalid', f === field);
  if (field) field.focus();
}

/** The server's rules, checked first so a typo is explained without a round trip. */
function fieldProblem(name, password) {
  if (!name) return ['Enter your name.', $('signin-name')];
  if (!password) return ['Enter your password.', $('signin-password')];
  if (mode !== 'signup') return null;
  if (!/^[\p{L}\p{N}._@-]{1,64}$/u.test(name)) return ['A name is 1 to 64 letters, digits, or . _ - @ (no spaces).', $('signin-name')];
  const n = [...password].length;
  if (n < 10 || n > 256) return ['A password is 10 to 256 characters long.', $('signin-password')];
  return null;
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = $('signin-form');
  if (form.getAttribute('aria-busy') === 'true') return;
  const name = $('signin-name').value.trim();
  const password = $('signin-password').value;
  const problem = fieldProblem(name, password);
  if (problem) { showSignInError(...problem); return; }
  const up = mode === 'signup';
  const json = up ? { name, password, ...(invite ? { invite } : {}) } : { name, password };
  form.setAttribute('aria-busy', 'true');
  try {
    const body = await api(up ? '/api/auth/signup' : '/api/auth/login', { method: 'POST', auth: false, json });
    if (up) invite = '';
    signedIn(body);
  } catch (err) {
    const wrong = err.code === 'invalid_credentials' ? $('signin-password') : err.code === 'name_taken' ? $('signin-name') : null;
    showSignInError(err.status ? err.message : 'The server could not be reached. Try again.', wrong);
    if (wrong) wrong.select();
  } finally {
    form.setAttribute('aria-busy', 'false');
  }
});

function signedIn(body) {
  $('signin-password').value = '';
  showSignInError('');
  // An account replaces a demo or pasted token, and starts clean.
  identity.set('', false);
  forgetUserData();
  if (!blank) { location.reload(); return; } // the cookie signs the reloaded page in
  session.set(body);
  demoOnClose = false;
  dialog.close();
  startChat();
}

// The signed-in user's sessions: where they are signed in, and a way to end the others.
async function loadSessions() {
  try {
    const { sessions } = await api('/api/auth/sessions');
    $('sessions').replaceChildren(...sessions.map(sessionItem));
    showSessionsError('');
  } catch (e) {
    if (session.active) showSessionsError(`Could not list your sessions: ${e.message}`);
  }
}

function sessionItem(s) {
  const id = `session-${s.id}`;
  const li = el('li', {}, el('span', { id, text: `${device(s.user_agent)} · signed in ${when(s.created_at)} · last used ${when(s.last_used_at)}` }));
  if (s.current) {
    li.append(el('span', { class: 'badge', text: 'this browser' }));
  } else {
    const b = el('button', { type: 'button', 'aria-describedby': id, text: 'Revoke' });
    b.addEventListener('click', () => revoke(s.id, b));
    li.append(b);
  }
  return li;
}

async function revoke(id, button) {
  button.disabled = true;
  try {
    await api(`/api/auth/sessions/${encodeURIComponent(id)}`, { method: 'DELETE' });
  } catch (e) {
    button.disabled = false;
    showSessionsError(`Could not revoke it: ${e.message}`);
    return;
  }
  // The button goes away with its row: keep the keyboard user in the list.
  $('sessions-title').focus();
  loadSessions();
}

function showSessionsError(message) {
  $('sessions-error').textContent = message;
  $('sessions-error').hidden = !message;
}

const when = (ms) => new Date(ms).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });

/** "Chrome on Linux" from a user agent: enough to tell one's own devices apart. */
function device(ua = '') {
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : '';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Windows/.test(ua) ? 'Windows' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : '';
  if (browser && os) return `${browser} on ${os}`;
  return browser || os || (ua ? ua.slice(0, 60) : 'Unknown browser');
}

// API keys for scripts: listed, created (the key itself is shown once) and revoked. The
// panel shows whenever the server lists this identity's keys; it refuses for an API key
// (keys cannot manage keys) and an older server has none: then there is nothing to show.
let keysAsked = 0; // only the latest listing is drawn: a create or revoke may race an open
let listFailed = false; // the alert shows a listing's failure, which the next listing clears

async function loadKeys() {
  const asked = ++keysAsked;
  let keys;
  try {
    ({ keys } = await api('/api/keys'));
  } catch (e) {
    if (asked !== keysAsked) return;
    // Unreachable or failing: say so. Refused (401, 403) or unknown (404): no keys here.
    if (!e.status || e.status >= 500) {
      $('keys-panel').hidden = false;
      showKeyError(`Could not list your keys: ${e.message}`);
      listFailed = true;
    } else hideKeys();
    return;
  }
  if (asked !== keysAsked) return;
  if (listFailed) { listFailed = false; showKeyError(''); }
  $('keys').replaceChildren(...keys.map((k) => keyItem(k, keys.filter((o) => o.name === k.name).length > 1)));
  $('keys-empty').hidden = keys.length > 0;
  $('keys-panel').hidden = false;
}

function hideKeys() {
  keysAsked++;
  $('keys-panel').hidden = true;
  $('keys').replaceChildren();
  forgetNewKey();
}

/** One key: what it is called and can do, when it was last used, and its Revoke. `twin`:
 *  another key has the same name, so its button also names the prefix. */
function keyItem(k, twin) {
  const id = `key-${k.id}`;
  const used = k.last_used_at == null ? 'never used' : `last used ${ago(k.last_used_at)}`;
  const text = el('span', { id }, el('strong', { text: k.name }), ` · `, el('code', { text: `${k.prefix}…` }),
    ` · ${k.scopes.join(', ')} · ${used}`);
  const b = el('button', { type: 'button', 'aria-label': `Revoke key ${k.name}${twin ? ` (${k.prefix}…)` : ''}`, 'aria-describedby': id, text: 'Revoke' });
  b.addEventListener('click', () => revokeKey(k.id, b));
  return el('li', {}, text, b);
}

async function revokeKey(id, button) {
  button.disabled = true;
  try {
    await api(`/api/keys/${encodeURIComponent(id)}`, { method: 'DELETE' });
  } catch (e) {
    button.disabled = false;
    showKeyError(`Could not revoke it: ${e.message}`);
    return;
  }
  showKeyError('');
  // The button goes away with its row: keep the keyboard user in the panel.
  $('keys-title').focus();
  loadKeys();
}

$('key-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = $('key-form');
  if (form.getAttribute('aria-busy') === 'true') return;
  const name = $('key-name').value.trim();
  const scopes = [...form.querySelectorAll('input[name="scope"]:checked')].map((c) => c.value);
  // The server's rules, checked first so a slip is explained without a round trip.
  const n = [...name].length;
  if (n < 1 || n > 64) { showKeyError('A key\'s name has 1 to 64 characters.', $('key-name')); return; }
  if (!scopes.length) { showKeyError('Choose at least one scope.', form.querySelector('input[name="scope"]')); return; }
  form.setAttribute('aria-busy', 'true');
  try {
    const made = await api('/api/keys', { method: 'POST', json: { name, scopes } });
    showKeyError('');
    form.reset();
    showNewKey(made);
    loadKeys();
  } catch (err) {
    showKeyError(err.status ? err.message : 'The server could not be reached. Try again.', err.code === 'invalid_field' ? $('key-name') : null);
  } finally {
    form.setAttribute('aria-busy', 'false');
  }
});

/** The key itself, once: the server keeps only its hash, so this is the only chance to copy it. */
function showNewKey({ key, name }) {
  $('new-key-label').textContent = `Your new key “${name}”`;
  $('new-key-value').value = key;
  $('copy-status').textContent = '';
  $('new-key').hidden = false;
  $('new-key-value').focus();
  $('new-key-value').select();
}

/** Drops the shown key from the page (the dialog closed, or someone else is using it). */
function forgetNewKey() {
  $('new-key-value').value = '';
  $('new-key').hidden = true;
  $('copy-status').textContent = '';
}

$('copy-key').addEventListener('click', async () => {
  const field = $('new-key-value');
  try {
    await navigator.clipboard.writeText(field.value);
    $('copy-status').textContent = 'Copied.';
  } catch {
    // No clipboard access (permissions, an insecure origin): leave it selected to copy by hand.
    field.focus();
    field.select();
    $('copy-status').textContent = 'Could not copy: it is selected, press Ctrl+C (⌘C).';
  }
});

function showKeyError(message, field = null) {
  listFailed = false;
  $('key-error').textContent = message;
  $('key-error').hidden = !message;
  $('key-name').toggleAttribute('aria-invalid', field === $('key-name'));
  if (field) field.focus();
}

const relative = new Intl.RelativeTimeFormat([], { numeric: 'auto' });
/** "3 minutes ago" for the last week, a date before that. */
function ago(ms) {
  const minutes = Math.round((Date.now() - ms) / 60000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return relative.format(-minutes, 'minute');
  if (minutes < 24 * 60) return relative.format(-Math.round(minutes / 60), 'hour');
  if (minutes < 7 * 24 * 60) return relative.format(-Math.round(minutes / (24 * 60)), 'day');
  return when(ms);
}

$('sign-out').addEventListener('click', async () => {
  try {
    await api('/api/auth/logout', { method: 'POST', json: {} });
  } catch (e) {
    if (e.status !== 401) { showSessionsError(`Could not sign out: ${e.message}`); return; }
  }
  // The reload asks for a sign-in, or (demo mode) makes a new demo user.
  session.clear();
  identity.set('', false);
  forgetUserData();
  location.reload();
});

boot();
