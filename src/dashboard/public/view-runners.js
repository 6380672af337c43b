// The fleet: every runner's heartbeat, load, memory and failure rate.
import { get } from './api.js';
import { badge, bytes, duration, html, percent, render, table } from './util.js';

export const title = 'Runners';

export const runnerState = (r) =>
  r.status === 'stopped' ? 'stopped' : !r.live ? 'down' : r.status === 'draining' ? 'draining' : 'up';

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
            [
              'Runner',
              'State',
              'Heartbeat',
              'Active / max',
              'Claimed',
              'Memory (runner / browsers)',
              'Executed',
              'Failures',
              'Failure rate',
              'Uptime',
              'Host',
              'Version',
            ],
            items.map((r) => [
              html`<a
                href="#/sessions?runnerId=${encodeURIComponent(r.runnerId)}"
                title="Sessions of this runner"
                >${r.runnerId}</a
              >`,
              badge(runnerState(r)),
              `${duration(r.heartbeatAgeMs)} ago`,
              `${r.activeSessions} / ${r.maxConcurrency}${
                r.effectiveConcurrency !== null && r.effectiveConcurrency !== r.maxConcurrency
                  ? ` (now ${r.effectiveConcurrency})`
                  : ''
              }`,
              `${bytes(r.memoryRssBytes)} / ${bytes(r.browserMemoryBytes)}`,
              r.totalSessionsExecuted,
              r.totalFailures,
              r.totalSessionsExecuted > 0 ? percent(r.totalFailures / r.totalSessionsExecuted) : '—',
              r.runningSessions,
              r.uptimeSeconds < 1 ? '< 1 s' : duration(r.uptimeSeconds * 1000),
              r.hostname ?? '—',
              r.version ?? '—',
            ]),
            { id: 'runners', caption: `${items.length} runner${items.length === 1 ? '' : 's'}` },
          ),
    );
  };
  return { refresh };
}
