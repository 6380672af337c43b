// Webhooks: the endpoints told when sessions finish, and each one's deliveries with their tries.
import { del, get, patch, post, query } from './api.js';
import { ago, badge, esc, html, render, table, time } from './util.js';

export const title = 'Webhooks';

const EVENTS = [
  'session.succeeded',
  'session.failed',
  'session.error',
  'session.cancelled',
  'session.finished',
];

export function mount(el, params) {
  const id = params.get('id');
  return id ? mountOne(el, id) : mountList(el);
}

function mountList(el) {
  render(
    el,
    html`<h2 tabindex="-1">Webhooks</h2>
      <p class="hint">
        Each webhook gets a signed POST (Standard Webhooks: <code>webhook-id</code>,
        <code>webhook-timestamp</code>, <code>webhook-signature</code>) when a session ends with one of its
        events, retried with backoff until the receiver answers 2xx or the retry window closes.
      </p>
      <div id="webhook-table">Loading…</div>
      <form id="webhook-form" class="form">
        <h3>New webhook</h3>
        <label for="webhook-url">URL</label>
        <input id="webhook-url" name="url" type="url" required placeholder="https://example.com/hooks/sfw" />
        <fieldset>
          <legend>Events</legend>
          ${EVENTS.map(
            (e) =>
              html`<label
                ><input
                  type="checkbox"
                  name="events"
                  value="${e}"
                  ${e === 'session.failed' ? 'checked' : ''}
                />
                ${e}</label
              >`,
          )}
        </fieldset>
        <div class="actions"><button type="submit">Create</button></div>
        <p id="webhook-result" role="status" aria-live="polite"></p>
      </form>`,
  );
  const form = el.querySelector('#webhook-form');
  const out = el.querySelector('#webhook-result');
  const refresh = async () => {
    const { items } = await get('/v1/webhooks?limit=200');
    render(
      el.querySelector('#webhook-table'),
      items.length === 0
        ? html`<p>No webhooks yet.</p>`
        : table(
            ['URL', 'Events', 'State', 'Created'],
            items.map((w) => [
              html`<a href="#/webhooks/${w.id}" title="Deliveries of this webhook">${w.url}</a>`,
              w.events.join(', '),
              badge(w.enabled ? 'enabled' : 'disabled'),
              time(w.createdAt),
            ]),
            { id: 'webhooks', caption: `${items.length} webhook${items.length === 1 ? '' : 's'}` },
          ),
    );
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const events = [...form.querySelectorAll('input[name=events]:checked')].map((c) => c.value);
    out.textContent = 'Creating…';
    try {
      const w = await post('/v1/webhooks', { url: form.url.value.trim(), events });
      render(
        out,
        html`Created. Its signing secret, shown in full only now (later with <code>?reveal=true</code>):
          <code class="secret">${w.secret}</code>`,
      );
      form.url.value = '';
      await refresh();
    } catch (err) {
      out.textContent = `Not created: ${err.message}`;
    }
  });
  return { refresh };
}

function mountOne(el, id) {
  render(
    el,
    html`<h2 tabindex="-1">Webhook</h2>
      <div id="webhook-detail">Loading…</div>
      <h3>Deliveries</h3>
      <p class="hint">
        One row per session event, newest first. A delivery keeps its <code>webhook-id</code> across tries;
        receivers dedupe by it.
      </p>
      <label for="delivery-status">Status</label>
      <select id="delivery-status">
        <option value="">any</option>
        <option>pending</option>
        <option>delivered</option>
        <option>failed</option>
      </select>
      <div id="delivery-table">Loading…</div>
      <p id="webhook-action" role="status" aria-live="polite"></p>`,
  );
  const status = el.querySelector('#delivery-status');
  const said = el.querySelector('#webhook-action');
  let hook = null;
  const act = async (what, fn) => {
    said.textContent = `${what}…`;
    try {
      await fn();
      said.textContent = `${what}: done.`;
      await refresh();
    } catch (err) {
      said.textContent = `${what}: ${err.message}`;
    }
  };
  const refresh = async () => {
    const [w, { items }] = await Promise.all([
      get(`/v1/webhooks/${encodeURIComponent(id)}`),
      get(`/v1/webhooks/${encodeURIComponent(id)}/deliveries${query({ status: status.value, limit: 100 })}`),
    ]);
    hook = w;
    render(
      el.querySelector('#webhook-detail'),
      html`<dl class="facts">
          <dt>URL</dt>
          <dd>${w.url}</dd>
          <dt>Events</dt>
          <dd>${w.events.join(', ')}</dd>
          <dt>State</dt>
          <dd>${badge(w.enabled ? 'enabled' : 'disabled')}</dd>
          <dt>Secret</dt>
          <dd><code>${w.secret}</code></dd>
          <dt>Created</dt>
          <dd>${time(w.createdAt)}</dd>
        </dl>
        <div class="actions">
          <button type="button" id="webhook-toggle">${w.enabled ? 'Disable' : 'Enable'}</button>
          <button type="button" id="webhook-delete">Delete</button>
        </div>`,
    );
    render(
      el.querySelector('#delivery-table'),
      items.length === 0
        ? html`<p>No deliveries${status.value ? ` ${esc(status.value)}` : ''} yet.</p>`
        : table(
            ['Session', 'Event', 'Status', 'Tries', 'Last answer', 'Next try', 'Created', 'Delivered', ''],
            items.map((d) => [
              html`<a href="#/sessions/${d.sessionId}">${d.sessionId.slice(0, 8)}…</a>`,
              d.event,
              badge(d.status),
              d.attempts,
              d.lastStatusCode !== null ? `HTTP ${d.lastStatusCode}` : (d.lastError ?? '—'),
              d.nextAttemptAt ? time(d.nextAttemptAt) : '—',
              ago(d.createdAt),
              d.deliveredAt ? time(d.deliveredAt) : '—',
              html`<button type="button" class="redeliver" data-id="${d.id}">Send again</button>`,
            ]),
            { id: 'deliveries', caption: `${items.length} deliver${items.length === 1 ? 'y' : 'ies'}` },
          ),
    );
  };
  el.addEventListener('click', (e) => {
    const t = e.target;
    if (!(t instanceof HTMLElement)) return;
    if (t.id === 'webhook-toggle' && hook)
      void act(hook.enabled ? 'Disable' : 'Enable', () =>
        patch(`/v1/webhooks/${encodeURIComponent(id)}`, { enabled: !hook.enabled }),
      );
    if (t.id === 'webhook-delete' && confirm('Delete this webhook and its deliveries?'))
      void del(`/v1/webhooks/${encodeURIComponent(id)}`).then(
        () => (location.hash = '#/webhooks'),
        (err) => (said.textContent = `Delete: ${err.message}`),
      );
    if (t.classList.contains('redeliver'))
      void act('Send again', () =>
        post(`/v1/webhooks/${encodeURIComponent(id)}/deliveries/${encodeURIComponent(t.dataset.id)}/retry`),
      );
  });
  status.addEventListener('change', () => void refresh());
  return { refresh };
}
