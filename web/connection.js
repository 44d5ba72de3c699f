// The WebSocket connection and the identity: token from the URL fragment, a pasted one,
// or the demo identity the server hands out (kept in localStorage so a reload keeps the
// same user). Authentication rides on the `jwt.<token>` subprotocol next to `apex.v1`.
// Reconnects with capped exponential backoff and jitter.

const TOKEN_KEY = 'apex.token';
const DEMO_KEY = 'apex.token.demo';
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];

export const identity = {
  get token() { return localStorage.getItem(TOKEN_KEY) || ''; },
  get isDemoToken() { return localStorage.getItem(DEMO_KEY) === '1'; },
  set(token, demo) {
    if (token) { localStorage.setItem(TOKEN_KEY, token); localStorage.setItem(DEMO_KEY, demo ? '1' : '0'); }
    else { localStorage.removeItem(TOKEN_KEY); localStorage.removeItem(DEMO_KEY); }
  },
};

/** Takes `#token=…` from the URL (then removes it from the address bar and history). */
export function tokenFromFragment() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (!m) return;
  identity.set(decodeURIComponent(m[1]), false);
  history.replaceState(null, '', location.pathname + location.search);
}

/** REST call with the current token; resolves to the parsed JSON, throws an Error with `status` and `code`. */
export async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  if (identity.token) headers.set('Authorization', `Bearer ${identity.token}`);
  const res = await fetch(path, { ...init, headers });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(body?.error?.message || `HTTP ${res.status}`);
    err.status = res.status;
    err.code = body?.error?.code;
    throw err;
  }
  return body;
}

export class Connection {
  /** handlers: onFrame(frame), onStatus(state, text), onReady(frame), onAuthProblem(message) */
  constructor(handlers) {
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.opened = false;
    addEventListener('online', () => this.reconnectNow());
    addEventListener('offline', () => this.status('offline', 'Offline'));
  }

  status(state, text) { this.state = state; this.h.onStatus(state, text); }

  get connected() { return this.ws?.readyState === WebSocket.OPEN && this.ready; }

  start() {
    clearTimeout(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); }
    this.ready = false;
    this.opened = false;
    if (this.attempt === 0) this.status('connecting', 'Connecting…');
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    const token = identity.token;
    const ws = new WebSocket(url, token ? ['apex.v1', `jwt.${token}`] : ['apex.v1']);
    this.ws = ws;
    ws.onopen = () => { this.opened = true; };
    ws.onmessage = (m) => {
      let frame;
      try { frame = JSON.parse(m.data); } catch { return; }
      if (frame.type === 'connection_ready') {
        this.ready = true;
        this.attempt = 0;
        if (frame.token) identity.set(frame.token, true);
        this.status('connected', frame.demo ? 'Connected (demo)' : 'Connected');
        this.h.onReady(frame);
        return;
      }
      this.h.onFrame(frame);
    };
    ws.onclose = (e) => this.closed(e, token);
  }

  async closed(e, token) {
    this.ws = null;
    this.ready = false;
    this.h.onClosed?.();
    if (!this.opened && token) {
      // Refused at the upgrade: find out whether the token is the reason (401).
      try { await api('/api/threads'); } catch (err) {
        if (err.status === 401) {
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
    if (e.code === 1008) { this.h.onAuthProblem('The token expired. Paste a fresh one.', !identity.isDemoToken); if (identity.isDemoToken) identity.set('', false); }
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
