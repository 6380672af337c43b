// Sessions list: filters, keyset paging (cursor), live updates on the first page. The list answers
// summaries (no inputs or results); a session's own view reads it whole.
import { get, query } from './api.js';
import { badge, duration, html, raw, render, table, time } from './util.js';
import { exportButtons, exportMarkup } from './view-batch.js';

export const title = 'Sessions';
const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'error', 'cancelled'];
const PAGE = 25;

export function mount(el, params) {
  const filter = {
    status: params.get('status') ?? '',
    type: params.get('type') ?? '',
    runnerId: params.get('runnerId') ?? '',
    scheduleId: params.get('scheduleId') ?? '',
    tag: params.get('tag') ?? '',
  };
  // Cursors of the pages before the current one (the first page has none).
  const cursors = [];
  let cursor = null;
  let nextCursor = null;
  render(
    el,
    html`<h2 tabindex="-1">Sessions</h2>
      <form id="session-filters" class="filters" role="search" aria-label="Filter sessions">
        <label for="filter-status">Status</label>
        <select id="filter-status" name="status">
          <option value="">any</option>
          ${STATUSES.map((s) => html`<option value="${s}" ${raw(s === filter.status ? ' selected' : '')}>${s}</option>`)}
        </select>
        <label for="filter-type">Type</label>
        <input
          id="filter-type"
          name="type"
          value="${filter.type}"
          placeholder="any type"
          autocomplete="off"
          pattern="[A-Za-z0-9][A-Za-z0-9._:\\-]*"
        />
        <label for="filter-tag">Tag</label>
        <input
          id="filter-tag"
          name="tag"
          value="${filter.tag}"
          placeholder="any tag"
          autocomplete="off"
          maxlength="64"
          pattern="[A-Za-z0-9][A-Za-z0-9._:\\/=@+\\-]*"
        />
        <label for="filter-runner">Runner</label>
        <input
          id="filter-runner"
          name="runnerId"
          value="${filter.runnerId}"
          placeholder="any runner"
          autocomplete="off"
        />
        <button type="submit">Apply</button>
      </form>
      <p class="actions" id="session-actions">
        ${filter.tag ? html`<a id="batch-link" href="#/tags/${encodeURIComponent(filter.tag)}">Batch progress of ${filter.tag}</a>` : ''}
        ${exportMarkup}
      </p>
      <p id="list-state" class="hint" aria-live="polite"></p>
      <div id="session-list">Loading…</div>
      <nav class="pager" aria-label="Pages">
        <button type="button" id="page-newer" disabled>← Newer</button>
        <button type="button" id="page-older" disabled>Older →</button>
      </nav>`,
  );
  const form = el.querySelector('#session-filters');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/sessions${query({
      status: form.status.value,
      type: form.type.value.trim(),
      runnerId: form.runnerId.value.trim(),
      tag: form.tag.value.trim(),
    })}`;
  });
  // The export takes the filters it knows (tag, status, type); a runner or schedule filter is not one.
  exportButtons(
    el.querySelector('#session-actions'),
    () => ({ tag: filter.tag, status: filter.status, type: filter.type }),
    (t) => (el.querySelector('#list-state').textContent = t),
  );
  form.status.addEventListener('change', () => form.requestSubmit());
  const newer = el.querySelector('#page-newer');
  const older = el.querySelector('#page-older');

  const refresh = async () => {
    const page = await get(`/v1/sessions${query({ ...filter, limit: PAGE, cursor })}`);
    nextCursor = page.nextCursor;
    newer.disabled = cursors.length === 0 && cursor === null;
    older.disabled = nextCursor === null;
    el.querySelector('#list-state').textContent =
      cursor === null
        ? `Newest first · live: this page refreshes by itself`
        : `Page ${cursors.length + 1} · older sessions (not refreshed live)`;
    render(
      el.querySelector('#session-list'),
      page.items.length === 0
        ? html`<p>
            No
            sessions${filter.status || filter.type || filter.runnerId || filter.scheduleId || filter.tag ? ' match these filters' : ' yet'}.
          </p>`
        : table(
            ['Session', 'Type', 'Status', 'Priority', 'Attempt', 'Created', 'Ran for', 'Runner'],
            page.items.map((s) => [
              html`<a href="#/sessions/${s.id}">${s.id.slice(0, 8)}…${s.id.slice(-4)}</a>`,
              s.type,
              badge(s.status),
              s.priority,
              `${s.attempt} / ${s.maxAttempts}`,
              time(s.createdAt),
              s.claimedAt
                ? duration(Date.parse(s.finishedAt ?? new Date().toISOString()) - Date.parse(s.claimedAt))
                : '—',
              s.claimedBy ?? '—',
            ]),
            { id: 'sessions', caption: 'Sessions, newest first' },
          ),
    );
  };
  older.addEventListener('click', async () => {
    if (nextCursor === null) return;
    cursors.push(cursor);
    cursor = nextCursor;
    await refresh();
  });
  newer.addEventListener('click', async () => {
    cursor = cursors.pop() ?? null;
    await refresh();
  });
  return { refresh, live: () => cursor === null };
}
