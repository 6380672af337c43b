// Named states: the saved storage states (cookies, local storage) sessions start from, by name and version.
// Their contents never reach the dashboard: the API answers metadata only.
import { del, get } from './api.js';
import { ago, badge, bytes, html, render, table, time } from './util.js';

export const title = 'States';

const encrypted = (yes) => badge(yes ? 'encrypted' : 'in-clear');
const session = (id) => (id ? html`<a href="#/sessions/${id}" title="${id}">…${id.slice(-12)}</a>` : '—');

export function mount(el, params) {
  const name = params.get('name');
  return name ? mountOne(el, name) : mountList(el);
}

function mountList(el) {
  render(
    el,
    html`<h2 tabindex="-1">Named states</h2>
      <p class="hint">
        A session with <code>state: {save: "name"}</code> stores its browser context's cookies and local
        storage under that name when it succeeds; one with <code>state: {use: "name"}</code> starts from the
        newest version. Contents are never shown here; without <code>STATE_ENCRYPTION_KEY</code> the API
        stores them in clear.
      </p>
      <div id="state-table">Loading…</div>
      <p id="state-action" role="status" aria-live="polite"></p>`,
  );
  const said = el.querySelector('#state-action');
  const refresh = async () => {
    const { items } = await get('/v1/states');
    render(
      el.querySelector('#state-table'),
      items.length === 0
        ? html`<p>No named states yet.</p>`
        : table(
            ['Name', 'Version', 'Size', 'At rest', 'Updated', 'By session', 'Expires', ''],
            items.map((s) => [
              html`<a href="#/states/${s.name}" title="Versions of this state">${s.name}</a>`,
              s.version,
              bytes(s.size),
              encrypted(s.encrypted),
              ago(s.updatedAt),
              session(s.savedBySession),
              s.expiresAt ? time(s.expiresAt) : 'never',
              html`<button type="button" class="state-delete" data-name="${s.name}">Delete</button>`,
            ]),
            { id: 'states', caption: `${items.length} named state${items.length === 1 ? '' : 's'}` },
          ),
    );
  };
  el.addEventListener('click', (e) => {
    const t = e.target;
    if (!(t instanceof HTMLElement) || !t.classList.contains('state-delete')) return;
    const name = t.dataset.name;
    if (!confirm(`Delete state ${name} and all its versions?`)) return;
    said.textContent = `Deleting ${name}…`;
    del(`/v1/states/${encodeURIComponent(name)}`).then(
      async () => {
        said.textContent = `Deleted ${name}.`;
        await refresh();
      },
      (err) => (said.textContent = `Delete ${name}: ${err.message}`),
    );
  });
  return { refresh };
}

function mountOne(el, name) {
  render(
    el,
    html`<h2 tabindex="-1">State ${name}</h2>
      <div id="state-detail">Loading…</div>
      <h3>Versions</h3>
      <div id="version-table">Loading…</div>
      <p id="state-action" role="status" aria-live="polite"></p>`,
  );
  const said = el.querySelector('#state-action');
  const refresh = async () => {
    let s;
    try {
      s = await get(`/v1/states/${encodeURIComponent(name)}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      render(
        el.querySelector('#state-detail'),
        html`<p>No state named ${name} (never saved, deleted or expired).</p>`,
      );
      render(el.querySelector('#version-table'), html``);
      return;
    }
    render(
      el.querySelector('#state-detail'),
      html`<dl class="facts">
          <dt>Newest version</dt>
          <dd>${s.version}</dd>
          <dt>Size</dt>
          <dd>${bytes(s.size)}</dd>
          <dt>At rest</dt>
          <dd>${encrypted(s.encrypted)}</dd>
          <dt>Updated</dt>
          <dd>${time(s.updatedAt)}</dd>
          <dt>By session</dt>
          <dd>${session(s.savedBySession)}</dd>
          <dt>Expires</dt>
          <dd>${s.expiresAt ? time(s.expiresAt) : 'never'}</dd>
        </dl>
        <div class="actions"><button type="button" id="state-delete">Delete</button></div>`,
    );
    render(
      el.querySelector('#version-table'),
      table(
        ['Version', 'Size', 'At rest', 'Saved', 'By session', 'Expires'],
        s.versions.map((v) => [
          v.version,
          bytes(v.size),
          encrypted(v.encrypted),
          time(v.savedAt),
          session(v.savedBySession),
          v.expiresAt ? time(v.expiresAt) : 'never',
        ]),
        {
          id: 'state-versions',
          caption: `${s.versions.length} kept version${s.versions.length === 1 ? '' : 's'}`,
        },
      ),
    );
  };
  el.addEventListener('click', (e) => {
    const t = e.target;
    if (!(t instanceof HTMLElement) || t.id !== 'state-delete') return;
    if (!confirm(`Delete state ${name} and all its versions?`)) return;
    del(`/v1/states/${encodeURIComponent(name)}`).then(
      () => (location.hash = '#/states'),
      (err) => (said.textContent = `Delete: ${err.message}`),
    );
  });
  return { refresh };
}
