// Queue overview: depth, claim wait and throughput over the last hour, and the queue's shape now.
import { get, query } from './api.js';
import { lineChart } from './charts.js';
import { duration, html, render, table } from './util.js';

export const title = 'Overview';

export function mount(el) {
  render(
    el,
    html`<h2 tabindex="-1">Overview</h2>
      <div class="cards" id="fleet-cards"></div>
      <section aria-labelledby="charts-h">
        <h3 id="charts-h">Last hour</h3>
        <div class="charts" id="charts">Loading…</div>
      </section>
      <section aria-labelledby="queue-h">
        <h3 id="queue-h">Queue now</h3>
        <div id="queue-now">Loading…</div>
      </section>`,
  );
  const refresh = async () => {
    const [queue, series] = await Promise.all([
      get('/v1/queue'),
      get(`/v1/stats/timeseries${query({ minutes: 60 })}`),
    ]);
    const b = queue.byStatus;
    render(
      el.querySelector('#fleet-cards'),
      html`${[
        ['Queued', b.queued ?? 0],
        ['Running', b.running ?? 0],
        ['Oldest queued', queue.oldestQueuedAgeMs === null ? '—' : duration(queue.oldestQueuedAgeMs)],
        ['Live runners', queue.runnersLive],
        ['Fleet capacity', queue.fleetCapacity],
        ['Succeeded', b.succeeded ?? 0],
        ['Failed', b.failed ?? 0],
        ['Error', b.error ?? 0],
      ].map(
        ([k, v]) =>
          html`<div class="card" id="card-${String(k).toLowerCase().replace(/\W+/g, '-')}">
            <div class="card-k">${k}</div>
            <div class="card-v">${v}</div>
          </div>`,
      )}`,
    );
    const times = series.points.map((p) => p.t);
    render(
      el.querySelector('#charts'),
      html`${lineChart({
        id: 'chart-depth',
        title: 'Queue depth (queued sessions)',
        times,
        series: [{ name: 'queued', color: '#0969da', values: series.points.map((p) => p.queued) }],
        format: (v) => String(Math.round(v)),
      })}
      ${lineChart({
        id: 'chart-wait',
        title: 'Average claim wait (ready → claimed)',
        times,
        series: [{ name: 'wait', color: '#8250df', values: series.points.map((p) => p.avgClaimWaitMs) }],
        format: (v) => duration(v),
      })}
      ${lineChart({
        id: 'chart-throughput',
        title: 'Throughput (sessions per minute)',
        times,
        series: [
          { name: 'enqueued', color: '#6e7781', values: series.points.map((p) => p.enqueued) },
          { name: 'finished', color: '#1a7f37', values: series.points.map((p) => p.finished) },
          { name: 'failed or error', color: '#cf222e', values: series.points.map((p) => p.failed) },
        ],
        format: (v) => String(Math.round(v)),
      })}`,
    );
    render(
      el.querySelector('#queue-now'),
      html`<div class="split">
        ${table(
          ['Priority', 'Queued'],
          queue.queuedByPriority.map((p) => [p.priority, p.count]),
          { caption: 'Queued by priority' },
        )}
        ${table(
          ['Type', 'Queued'],
          queue.queuedByType.map((t) => [t.type, t.count]),
          { caption: 'Queued by type' },
        )}
        ${table(['Status', 'Sessions'], Object.entries(b), { caption: 'All sessions by status' })}
      </div>`,
    );
  };
  return { refresh };
}
