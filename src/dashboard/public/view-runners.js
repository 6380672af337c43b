// The fleet: every runner's heartbeat, load, memory and failure rate.
import { get } from './api.js';
import { badge, bytes, duration, html, percent, render, table } from './util.js';

export const title = 'Runners';

export const runnerState = (r) =>
  r.status === 'stopped' ? 'stopped' : !r.live ? 'down' : r.status === 'draining' ? 'draining' : 'up';

/** Each column's header beside the cell it heads, so the two cannot drift apart. */
const COLUMNS = [
  [
    'Runner',
    (r) =>
      html`<a href="#/sessions?runnerId=${encodeURIComponent(r.runnerId)}" title="Sessions of this runner"
        >${r.runnerId}</a
      >`,
  ],
  ['State', (r) => badge(runnerState(r))],
  ['Heartbeat', (r) => `${duration(r.heartbeatAgeMs)} ago`],
  [
    'Active / max',
    (r) =>
      `${r.activeSessions} / ${r.maxConcurrency}${
        r.effectiveConcurrency !== null && r.effectiveConcurrency !== r.maxConcurrency
          ? ` (now ${r.effectiveConcurrency})`
          : ''
      }`,
  ],
  ['Claimed', (r) => r.runningSessions],
  ['Memory (runner / browsers)', (r) => `${bytes(r.memoryRssBytes)} / ${bytes(r.browserMemoryBytes)}`],
  ['Executed', (r) => r.totalSessionsExecuted],
  ['Failures', (r) => r.totalFailures],
  [
    'Failure rate',
    (r) => (r.totalSessionsExecuted > 0 ? percent(r.totalFailures / r.totalSessionsExecuted) : '—'),
  ],
  ['Uptime', (r) => (r.uptimeSeconds < 1 ? '< 1 s' : duration(r.uptimeSeconds * 1000))],
  ['Types', (r) => (r.types?.length ? r.types.join(', ') : '—')],
  ['Host', (r) => r.hostname ?? '—'],
  ['Version', (r) => r.version ?? '—'],
];

export function mount(el) {
  render(
    el,
    html`<h2 tabindex="-1">Runners</h2>
      <p class="hint">
        Each runner reports to <code>runner_health</code> on every poll. A runner is down when its last
        heartbeat is more than a minute old; stopped runners leave this list after the retention.
      </p>
      <div id="runner-table">Loading…</div>`,
  );
  const refresh = async () => {
    const { items } = await get('/v1/runners');
    render(
      el.querySelector('#runner-table'),
      items.length === 0
        ? html`<p>No runners yet. Start one with <code>sfw runner</code>.</p>`
        : table(
            COLUMNS.map(([head]) => head),
            items.map((r) => COLUMNS.map(([, cell]) => cell(r))),
            { id: 'runners', caption: `${items.length} runner${items.length === 1 ? '' : 's'}` },
          ),
    );
  };
  return { refresh };
}
