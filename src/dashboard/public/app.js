// Dashboard shell: hash routes, polling, the alerts banner and token sign-in. Talks to the HTTP API only.
import { ApiError, get, setToken, token, Unauthorized } from './api.js';
import { html, render } from './util.js';
import * as overview from './view-overview.js';
import * as sessions from './view-sessions.js';
import * as session from './view-session.js';
import * as runners from './view-runners.js';
import * as schedules from './view-schedules.js';
import * as settings from './view-settings.js';
import * as webhooks from './view-webhooks.js';
import * as states from './view-states.js';
import * as limits from './view-limits.js';
import * as batch from './view-batch.js';

const POLL_MS = 3000;
const ROUTES = [
  { re: /^\/?$/, view: overview, nav: 'overview' },
  { re: /^\/sessions$/, view: sessions, nav: 'sessions' },
  { re: /^\/sessions\/(?<id>[0-9a-fA-F-]{36})$/, view: session, nav: 'sessions' },
  { re: /^\/runners$/, view: runners, nav: 'runners' },
  { re: /^\/schedules$/, view: schedules, nav: 'schedules' },
  { re: /^\/webhooks$/, view: webhooks, nav: 'webhooks' },
  { re: /^\/webhooks\/(?<id>[0-9a-fA-F-]{36})$/, view: webhooks, nav: 'webhooks' },
  { re: /^\/states$/, view: states, nav: 'states' },
  { re: /^\/states\/(?<name>[A-Za-z0-9][A-Za-z0-9._:-]{0,99})$/, view: states, nav: 'states' },
  { re: /^\/limits$/, view: limits, nav: 'limits' },
  { re: /^\/tags$/, view: batch, nav: 'batches' },
  { re: /^\/tags\/(?<tag>[A-Za-z0-9][A-Za-z0-9._:/=@+%-]{0,200})$/, view: batch, nav: 'batches' },
  { re: /^\/settings$/, view: settings, nav: 'settings' },
];

const main = document.getElementById('main');
const statusLine = document.getElementById('status');
const announce = document.getElementById('announce');
const alertsEl = document.getElementById('alerts');
const signOut = document.getElementById('sign-out');
let current = null;
let generation = 0;

const navigate = (hash) => {
  if (location.hash === hash) void route();
  else location.hash = hash;
};

function showError(err) {
  if (err instanceof Unauthorized) return showSignIn();
  const text = err instanceof ApiError ? `API: ${err.message}` : `Cannot reach the API: ${err.message}`;
  // Announce a new problem once; the status line itself is not a live region (it ticks every poll).
  if (statusLine.textContent !== text) announce.textContent = text;
  statusLine.textContent = text;
  statusLine.classList.add('stale');
}

function showSignIn() {
  current?.unmount?.();
  current = null;
  alertsEl.hidden = true;
  render(
    main,
    html`<h2 tabindex="-1">Sign in</h2>
      <form id="sign-in" class="form">
        <p class="hint">
          This API requires a token. Paste the value of <code>API_TOKEN</code>; it is kept in this browser tab
          only (sessionStorage).
        </p>
        <label for="token-input">API token</label>
        <input id="token-input" name="token" type="password" autocomplete="current-password" required />
        <div class="actions"><button type="submit">Sign in</button></div>
        ${token() ? html`<p class="bad" role="alert">That token was refused.</p>` : ''}
      </form>`,
  );
  main.querySelector('#token-input').focus();
  main.querySelector('#sign-in').addEventListener('submit', (e) => {
    e.preventDefault();
    setToken(e.target.token.value.trim());
    void route();
  });
}

let shownAlerts = '';
async function refreshAlerts() {
  const { items } = await get('/v1/alerts');
  // The banner is not a live region (its ages tick every poll): announce only when the set of alerts changes.
  const key = JSON.stringify(items.map((a) => [a.name, a.runnerId ?? '']));
  if (key !== shownAlerts && items.length > 0)
    announce.textContent = `${items.length} alert${items.length === 1 ? '' : 's'}: ${items.map((a) => a.name).join(', ')}`;
  shownAlerts = key;
  alertsEl.hidden = items.length === 0;
  render(
    alertsEl,
    html`<h2 class="visually-hidden">Alerts</h2>
      <ul>
        ${items.map(
          (a) => html`<li class="alert-${a.severity}"><strong>${a.name}</strong> ${a.message}</li>`,
        )}
      </ul>`,
  );
}

async function tick(first = false) {
  const gen = generation;
  try {
    const work = [refreshAlerts()];
    if (current?.refresh && (first || (current.live?.() ?? true))) work.push(current.refresh());
    if (first && current?.load) work.push(current.load());
    await Promise.all(work);
    if (gen !== generation) return;
    signOut.hidden = !token();
    statusLine.classList.remove('stale');
    statusLine.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (gen === generation) showError(err);
  }
}

async function route() {
  generation++;
  current?.unmount?.();
  const [path, q = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(q);
  const match = ROUTES.map((r) => ({ r, m: r.re.exec(path) })).find((x) => x.m);
  for (const a of document.querySelectorAll('nav.main-nav a')) {
    if (match && a.dataset.nav === match.r.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!match) {
    current = null;
    render(
      main,
      html`<h2 tabindex="-1">Not found</h2>
        <p><a href="#/">Back to the overview</a></p>`,
    );
    return;
  }
  for (const [k, v] of Object.entries(match.m.groups ?? {})) params.set(k, v);
  document.title = `${match.r.view.title} · Session Framework`;
  current = match.r.view.mount(main, params, { navigate });
  main.querySelector('h2')?.focus({ preventScroll: true });
  await tick(true);
}

signOut.addEventListener('click', () => {
  setToken(null);
  signOut.hidden = true;
  showSignIn();
});
window.addEventListener('hashchange', () => void route());
setInterval(() => {
  if (!document.hidden && current) void tick();
}, POLL_MS);
void route();
document.querySelector('a.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});
