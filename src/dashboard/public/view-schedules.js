// Schedules: each one's expression and time zone, its next fire time, and its last sessions with their status.
import { get, patch } from './api.js';
import { ago, badge, duration, html, render, table, time } from './util.js';

export const title = 'Schedules';

const until = (iso) => {
  if (!iso) return '';
  const ms = Date.parse(iso) - Date.now();
  return ms <= 0 ? 'due now' : ms < 1000 ? 'in < 1 s' : `in ${duration(ms)}`;
};

/** Each column's header beside the cell it heads. */
const COLUMNS = [
  [
    'Schedule',
    (s) =>
      html`<a href="#/sessions?scheduleId=${encodeURIComponent(s.id)}" title="Sessions of this schedule"
        >${s.name}</a
      >`,
  ],
  ['Cron', (s) => html`<code>${s.cron}</code> <span class="hint">${s.timezone}</span>`],
  ['State', (s) => badge(s.enabled ? 'enabled' : 'disabled')],
  [
    'Next run',
    (s) =>
      s.nextRunAt
        ? html`<span title="${time(s.nextRunAt)} (${s.nextRunAt})">${until(s.nextRunAt)}</span>`
        : '—',
  ],
  ['Last run', (s) => (s.lastRunAt ? html`<span title="${s.lastRunAt}">${ago(s.lastRunAt)}</span>` : '—')],
  [
    'Last sessions (newest first)',
    (s) =>
      s.recent.length === 0
        ? '—'
        : s.recent.map(
            (r) =>
              html`<a
                href="#/sessions/${r.id}"
                class="run"
                title="${r.scheduledFor}${r.errorMessage ? ` — ${r.errorMessage}` : ''}"
                >${badge(r.status)}</a
              > `,
          ),
  ],
  ['Catch-up · overlap', (s) => `${s.catchUp} · ${s.overlap}`],
  [
    '',
    (s) =>
      html`<button type="button" data-id="${s.id}" data-enable="${s.enabled ? '' : '1'}">
        ${s.enabled ? 'Disable' : 'Enable'}
      </button>`,
  ],
];

export function mount(el) {
  render(
    el,
    html`<h2 tabindex="-1">Schedules</h2>
      <p class="hint">
        Each fire time of a schedule enqueues one session, whichever API replica takes it. Create them with
        <code>sfw schedules create</code> or <code>POST /v1/schedules</code>.
      </p>
      <p id="schedule-error" class="bad" role="alert"></p>
      <div id="schedule-table">Loading…</div>`,
  );
  const box = el.querySelector('#schedule-table');
  const refresh = async () => {
    const items = [];
    let cursor = '';
    do {
      const page = await get(
        `/v1/schedules?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      items.push(...page.items);
      cursor = page.nextCursor ?? '';
    } while (cursor);
    render(
      box,
      items.length === 0
        ? html`<p>No schedules yet. Create one with <code>sfw schedules create</code>.</p>`
        : table(
            COLUMNS.map(([head]) => head),
            items.map((s) => COLUMNS.map(([, cell]) => cell(s))),
            { id: 'schedules', caption: `${items.length} schedule${items.length === 1 ? '' : 's'}` },
          ),
    );
  };
  box.addEventListener('click', async (e) => {
    const button = e.target.closest('button[data-id]');
    if (!button) return;
    button.disabled = true;
    try {
      await patch(`/v1/schedules/${button.dataset.id}`, { enabled: button.dataset.enable === '1' });
      el.querySelector('#schedule-error').textContent = '';
      await refresh();
    } catch (err) {
      el.querySelector('#schedule-error').textContent = err.message;
      button.disabled = false;
    }
  });
  return { refresh };
}
