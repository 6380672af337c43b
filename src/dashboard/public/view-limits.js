// Per-key limits: the bound on each key's sessions across the fleet, with what runs and what waits now.
import { del, get, put } from './api.js';
import { html, render, table, time } from './util.js';

export const title = 'Limits';

const bound = (n) => (n === null ? '—' : String(n));

export function mount(el) {
  render(
    el,
    html`<h2 tabindex="-1">Per-key limits</h2>
      <p class="hint">
        A session counts under its <code>concurrencyKey</code> (a flow's default: the host of its first
        <code>goto</code>). Across all runners, at most <em>concurrency</em> sessions of a limited key run at
        once and at most <em>per minute</em> are claimed in any 60 s; the rest wait, and other work is claimed
        meanwhile. A site that answers a navigation with 429 or 503 and <code>Retry-After</code> gets no
        session of its key until then (listed here while it lasts).
      </p>
      <div id="limit-table">Loading…</div>
      <form id="limit-form" class="form">
        <h3>Set a limit</h3>
        <label for="limit-key">Key</label>
        <input id="limit-key" name="key" required maxlength="200" placeholder="shop.example.com" />
        <label for="limit-concurrency">Concurrency</label>
        <input id="limit-concurrency" name="concurrency" type="number" min="1" placeholder="no bound" />
        <label for="limit-per-minute">Per minute</label>
        <input id="limit-per-minute" name="perMinute" type="number" min="1" placeholder="no bound" />
        <div class="actions"><button type="submit">Set</button></div>
        <p id="limit-result" role="status" aria-live="polite"></p>
      </form>`,
  );
  const form = el.querySelector('#limit-form');
  const out = el.querySelector('#limit-result');
  const refresh = async () => {
    const { items } = await get('/v1/limits');
    render(
      el.querySelector('#limit-table'),
      items.length === 0
        ? html`<p>No limits: sessions of every key run as fast as runners take them.</p>`
        : table(
            [
              'Key',
              'Concurrency',
              'Per minute',
              'Running',
              'Waiting',
              'Claimed last minute',
              'Next look',
              'Backing off until',
              '',
            ],
            items.map((l) => [
              l.key,
              bound(l.concurrency),
              bound(l.perMinute),
              l.running,
              l.waiting,
              bound(l.claimedLastMinute),
              l.releaseAt ? time(l.releaseAt) : '—',
              l.backoffUntil ? time(l.backoffUntil) : '—',
              html`<button type="button" class="limit-delete" data-key="${l.key}">Delete</button>`,
            ]),
            { id: 'limits', caption: `${items.length} limit${items.length === 1 ? '' : 's'}` },
          ),
    );
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = form.key.value.trim();
    const body = {};
    if (form.concurrency.value) body.concurrency = Number(form.concurrency.value);
    if (form.perMinute.value) body.perMinute = Number(form.perMinute.value);
    out.textContent = 'Setting…';
    try {
      await put(`/v1/limits/${encodeURIComponent(key)}`, body);
      out.textContent = `Set the limit of ${key}.`;
      await refresh();
    } catch (err) {
      out.textContent = `Not set: ${err.message}`;
    }
  });
  el.addEventListener('click', (e) => {
    const t = e.target;
    if (!(t instanceof HTMLElement) || !t.classList.contains('limit-delete')) return;
    const key = t.dataset.key;
    if (!confirm(`Delete the limit of ${key}? Its waiting sessions are queued again at once.`)) return;
    out.textContent = `Deleting ${key}…`;
    del(`/v1/limits/${encodeURIComponent(key)}`).then(
      async () => {
        out.textContent = `Deleted the limit of ${key}.`;
        await refresh();
      },
      (err) => (out.textContent = `Delete ${key}: ${err.message}`),
    );
  });
  return { refresh };
}
