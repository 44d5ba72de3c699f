// The WebSocket connection and the identity. Three ways to be someone:
// - a signed-in local account: the session is an HttpOnly cookie the page never sees, and
//   the short-lived access token it yields lives in memory only (`session`), refreshed
//   before it runs out, so a reload signs back in through POST /api/auth/refresh;
// - a token from the URL fragment or pasted in the account dialog;
// - the demo identity the server hands out in demo mode.
// The last two are kept in localStorage so a reload keeps the same user. Authentication
// rides on the `jwt.<token>` subprotocol next to `apex.v1`. Reconnects with capped
// exponential backoff and jitter.

const TOKEN_KEY = 'apex.token';
const ORG_KEY = 'apex.org';
const DEMO_KEY = 'apex.token.demo';
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];
// Close code of a socket whose session was signed out, revoked or disabled elsewhere.
const SESSION_ENDED = 4001;

/**
 * The organization whose usage the page reads and asks about: '' for the user's own
 * space. `id` is what requests and the socket use (set once the user's organizations are
 * known to hold it); `wanted` is the last choice, remembered across reloads.
 */
export const organization = {
  id: '',
  get wanted() { return localStorage.getItem(ORG_KEY) || ''; },
  choose(id) {
    this.id = id;
    if (id) localStorage.setItem(ORG_KEY, id); else localStorage.removeItem(ORG_KEY);
  },
  forget() { this.id = ''; localStorage.removeItem(ORG_KEY); },
};

/** The signed-in account: its access token and user, in memory only. */
export const session = {
  token: '',
  user: null,         // { id, name, role }
  timer: null,
  pending: null,
  onEnded: null,      // called once when the server no longer knows an active session
  get active() { return !!this.token; },

  /** Takes a sign-in, sign-up or refresh answer and schedules the next refresh. */
  set({ access_token, expires_in, user }) {
    this.token = access_token;
    this.user = user;
    clearTimeout(this.timer);
    // About a minute early; half-way for short lifetimes, so a slow refresh still lands in time.
    const ttl = Number(expires_in) > 0 ? Number(expires_in) : 900;
    const lead = Math.min(60, ttl / 2);
    this.timer = setTimeout(() => this.renew(), Math.max(1, ttl - lead) * 1000);
  },

  clear() {
    clearTimeout(this.timer);
    this.token = '';
    this.user = null;
  },

  /** A scheduled refresh: a network failure is retried; a refused one ends the session. */
  async renew() {
    if (await this.refresh() === 'error') this.timer = setTimeout(() => this.renew(), 15000);
  },

  /**
   * POST /api/auth/refresh with the cookie: 'ok' (signed in, new access token), 'ended'
   * (no session, or the server ended it) or 'error' (the server could not be asked).
   * One refresh at a time in this page, and across tabs where the browser allows it: the
   * server may rotate the cookie, and two refreshes racing with the same one would look
   * like a stolen cookie.
   */
  refresh() {
    this.pending ??= exclusive('apex.refresh', () => this.ask()).finally(() => { this.pending = null; });
    return this.pending;
  },

  async ask() {
    const wasActive = this.active;
    let res;
    try {
      res = await fetch('/api/auth/refresh', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    } catch { return 'error'; }
    if (res.ok) {
      const body = await res.json().catch(() => null);
      if (!body?.access_token) return 'error';
      this.set(body);
      return 'ok';
    }
    if (res.status !== 401 && res.status !== 403) return 'error';
    this.clear();
    if (wasActive) this.onEnded?.();
    return 'ended';
  },
};

const exclusive = (name, fn) => (navigator.locks ? navigator.locks.request(name, fn) : fn());

export const identity = {
  get token() { return session.token || localStorage.getItem(TOKEN_KEY) || ''; },
  get isDemoToken() { return !session.active && localStorage.getItem(DEMO_KEY) === '1'; },
  /** A token pasted or taken from a link (not a demo one): the user chose it over signing in. */
  get hasChosenToken() { return !!localStorage.getItem(TOKEN_KEY) && localStorage.getItem(DEMO_KEY) !== '1'; },
  set(token, demo) {
    if (token) { localStorage.setItem(TOKEN_KEY, token); localStorage.setItem(DEMO_KEY, demo ? '1' : '0'); }
    else { localStorage.removeItem(TOKEN_KEY); localStorage.removeItem(DEMO_KEY); }
  },
};

/**
 * Takes `#token=…` (stored as the identity) and `#invite=…` from the URL, then removes
 * the fragment from the address bar and history; returns the invite code, if any.
 */
export function takeFragment() {
  const get = (name) => {
    const m = new RegExp(`(?:^|[#&])${name}=([^&]+)`).exec(location.hash);
    return m ? decodeURIComponent(m[1]) : '';
  };
  const token = get('token');
  const invite = get('invite');
  const join = get('join');
  if (join) sessionStorage.setItem('apex.join', join);
  // Why a sign-in with the identity provider came back without a session.
  const ssoError = get('signin_error');
  if (ssoError) sessionStorage.setItem('apex.signin_error', ssoError.replace(/\+/g, ' '));
  if (token) identity.set(token, false);
  if (token || invite || join || ssoError) history.replaceState(null, '', location.pathname + location.search);
  return invite;
}

/** GET /api/auth/config: null when the server has no accounts API (an older server). */
export async function authConfig() {
  try {
    const res = await fetch('/api/auth/config');
    return res.ok ? await res.json() : null;
  } catch { return null; }
}

/**
 * REST call with the current token; resolves to the parsed JSON (null for 204), throws
 * an Error with `status` and `code`. `json` is sent as the body; `auth: false` sends no
 * token. A 401 on a session's access token (it ran out while the page slept) refreshes
 * it once and retries.
 */
export async function api(path, { json, auth = true, ...init } = {}, retried = false) {
  const headers = new Headers(init.headers || {});
  const token = auth ? identity.token : '';
  if (token) headers.set('Authorization', `Bearer ${token}`);
  if (auth && organization.id && !headers.has('X-Apex-Org')) headers.set('X-Apex-Org', organization.id);
  if (json !== undefined) { headers.set('Content-Type', 'application/json'); init.body = JSON.stringify(json); }
  const viaSession = !!token && token === session.token;
  const res = await fetch(path, { credentials: 'same-origin', ...init, headers });
  // (Another request may have refreshed it meanwhile: then the retry needs no refresh.)
  if (res.status === 401 && viaSession && !retried && (token !== session.token || await session.refresh() === 'ok')) {
    return api(path, { json, auth, ...init }, true);
  }
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(body?.error?.message || `HTTP ${res.status}`);
    err.status = res.status;
    err.code = body?.error?.code;
    throw err;
  }
  return body;
}

export class Connection {
  /** handlers: onFrame(frame), onStatus(state, text), onReady(frame), onClosed(),
   *  onAuthProblem(message, ask), onSignedOut(reason) */
  constructor(handlers) {
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.opened = false;
    this.stopped = true;
    addEventListener('online', () => { if (!this.stopped) this.reconnectNow(); });
    addEventListener('offline', () => { if (!this.stopped) this.status('offline', 'Offline'); });
  }

  status(state, text) { this.state = state; this.h.onStatus(state, text); }

  get connected() { return this.ws?.readyState === WebSocket.OPEN && this.ready; }

  start() {
    clearTimeout(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); }
    this.stopped = false;
    this.ready = false;
    this.opened = false;
    if (this.attempt === 0) this.status('connecting', 'Connecting…');
    const org = organization.id ? `?org=${encodeURIComponent(organization.id)}` : '';
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws${org}`;
    const token = identity.token;
    const viaSession = session.active;
    const ws = new WebSocket(url, token ? ['apex.v1', `jwt.${token}`] : ['apex.v1']);
    this.ws = ws;
    ws.onopen = () => { this.opened = true; };
    ws.onmessage = (m) => {
      let frame;
      try { frame = JSON.parse(m.data); } catch { return; }
      if (frame.type === 'connection_ready') {
        this.ready = true;
        this.attempt = 0;
        if (frame.token && !viaSession) identity.set(frame.token, true);
        this.status('connected', frame.demo ? 'Connected (demo)' : 'Connected');
        this.h.onReady(frame);
        return;
      }
      this.h.onFrame(frame);
    };
    ws.onclose = (e) => this.closed(e, token, viaSession);
  }

  /** Closes the socket and stays closed (signed out): no reconnect until start(). */
  stop(text = 'Signed out') {
    clearTimeout(this.timer);
    this.stopped = true;
    this.attempt = 0;
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    this.ready = false;
    this.status('offline', text);
    this.h.onClosed?.();
  }

  async closed(e, token, viaSession) {
    this.ws = null;
    this.ready = false;
    this.h.onClosed?.();
    if (e.code === SESSION_ENDED) {
      // Signed out elsewhere: reconnecting would only be refused again.
      this.stop();
      this.h.onSignedOut?.(e.reason);
      return;
    }
    if (!this.opened && token) {
      // Refused at the upgrade: find out whether the token is the reason (401). For a
      // session, api() refreshes the access token first; if the session is gone,
      // session.onEnded has taken over.
      try { await api('/api/threads'); } catch (err) {
        if (viaSession && !session.active) return;
        if (err.status === 401 && !viaSession) {
          if (identity.isDemoToken) { identity.set('', false); this.h.onAuthProblem('Your demo identity expired; a new one was created.', false); return this.start(); }
          this.status('offline', 'Signed out');
          this.h.onAuthProblem(`The token was refused: ${err.message}. Paste another one.`, true);
          return;
        }
      }
    } else if (!this.opened && !token) {
      try { await api('/api/threads'); } catch (err) {
        if (err.status === 401) { this.status('offline', 'Signed out'); this.h.onAuthProblem('This server needs a token (demo mode is off). Paste one.', true); return; }
      }
    }
    if (this.stopped) return;
    if (e.code === 1008) {
      if (viaSession) { if (await session.refresh() === 'ended') return; }
      else { this.h.onAuthProblem('The token expired. Paste a fresh one.', !identity.isDemoToken); if (identity.isDemoToken) identity.set('', false); }
    }
    this.schedule();
  }

  schedule() {
    if (!navigator.onLine) { this.status('offline', 'Offline'); return; }
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    const state = this.attempt > 6 ? 'offline' : 'reconnecting';
    this.status(state, `${state === 'offline' ? 'Offline' : 'Reconnecting'} · retry in ${Math.ceil(delay / 1000)} s`);
    this.timer = setTimeout(() => this.start(), delay);
  }

  reconnectNow() { this.attempt = 0; this.start(); }

  /** Sends a frame; false when not connected. */
  send(frame) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}
