import os from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { RunnerView } from '../protocol/schemas.js';
import type { AlertView } from '../protocol/schemas.js';
import type { HistogramSeries, QueueDepthRow } from '../store/metrics.js';
import type { ScheduleStats } from '../store/schedules.js';

/**
 * Prometheus text exposition (format 0.0.4). Everything about sessions and runners is read from the
 * database, so every API replica answers the same; only the `sfw_api_*` request series are per replica
 * and carry a `replica` label.
 */

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** This process's name in per-replica series. */
export const REPLICA = `${os.hostname()}:${process.pid}`;

declare module 'fastify' {
  interface FastifyInstance {
    requestMetrics: RequestMetrics;
  }
}

type Labels = Record<string, string | number>;

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

/** Builds one exposition; each metric family is declared once with its HELP and TYPE. */
export class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'gauge' | 'counter' | 'histogram', help: string): this {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, labels: Labels, value: number): this {
    this.lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
    return this;
  }

  histogram(
    name: string,
    labels: Labels,
    h: { bounds: number[]; cumulative: number[]; count: number; sum: number },
  ): this {
    h.bounds.forEach((le, i) => this.sample(`${name}_bucket`, { ...labels, le }, h.cumulative[i] ?? 0));
    this.sample(`${name}_bucket`, { ...labels, le: '+Inf' }, h.count);
    this.sample(`${name}_sum`, labels, h.sum);
    this.sample(`${name}_count`, labels, h.count);
    return this;
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/** Per-replica HTTP request counts and latencies (in-process, like any request metric). */
export class RequestMetrics {
  static readonly BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
  private readonly counts = new Map<string, { labels: Labels; n: number }>();
  private readonly latency = new Map<
    string,
    { labels: Labels; buckets: number[]; count: number; sum: number }
  >();

  observe(method: string, route: string, statusCode: number, seconds: number): void {
    const countKey = `${method} ${route} ${statusCode}`;
    const c = this.counts.get(countKey) ?? { labels: { method, route, code: statusCode }, n: 0 };
    c.n++;
    this.counts.set(countKey, c);
    const latKey = `${method} ${route}`;
    const l = this.latency.get(latKey) ?? {
      labels: { method, route },
      buckets: new Array<number>(RequestMetrics.BOUNDS.length).fill(0),
      count: 0,
      sum: 0,
    };
    RequestMetrics.BOUNDS.forEach((b, i) => {
      if (seconds <= b) l.buckets[i] = (l.buckets[i] ?? 0) + 1;
    });
    l.count++;
    l.sum += seconds;
    this.latency.set(latKey, l);
  }

  write(out: Exposition, replica: string): void {
    out.family('sfw_api_requests_total', 'counter', 'HTTP requests answered by this API replica');
    for (const c of this.counts.values()) out.sample('sfw_api_requests_total', { replica, ...c.labels }, c.n);
    out.family(
      'sfw_api_request_duration_seconds',
      'histogram',
      'HTTP request latency on this API replica (long-polls included)',
    );
    for (const l of this.latency.values()) {
      out.histogram(
        'sfw_api_request_duration_seconds',
        { replica, ...l.labels },
        { bounds: RequestMetrics.BOUNDS, cumulative: l.buckets, count: l.count, sum: l.sum },
      );
    }
  }
}

/** Counts every answered request by route template (never the raw URL: label values stay bounded). */
export function installRequestMetrics(app: FastifyInstance, metrics = new RequestMetrics()): void {
  app.decorate('requestMetrics', metrics);
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.observe(req.method, route, reply.statusCode, reply.elapsedTime / 1000);
  });
}

export interface FleetSnapshot {
  depth: QueueDepthRow[];
  oldest: { type: string; ageSeconds: number }[];
  claimWait: HistogramSeries[];
  duration: HistogramSeries[];
  finished: { type: string; status: string; count: number }[];
  runners: RunnerView[];
  scheduler: { maxConcurrency: number; pollIntervalMs: number };
  alerts: AlertView[];
  alertNames: string[];
}

const RUNNER_STATES = ['up', 'draining', 'down', 'stopped'] as const;

export function runnerState(r: RunnerView): (typeof RUNNER_STATES)[number] {
  if (r.status === 'stopped') return 'stopped';
  if (!r.live) return 'down';
  return r.status === 'draining' ? 'draining' : 'up';
}

/** Schedules by state, their lag (fire time → session created) and fires by outcome (from the database). */
export function writeSchedules(out: Exposition, s: ScheduleStats): void {
  out.family('sfw_schedules', 'gauge', 'Schedules by state: enabled, disabled');
  out.sample('sfw_schedules', { state: 'enabled' }, s.enabled);
  out.sample('sfw_schedules', { state: 'disabled' }, s.disabled);
  out.family(
    'sfw_schedule_lag_seconds',
    'histogram',
    "Time from a schedule's fire time to the creation of its session",
  );
  out.histogram('sfw_schedule_lag_seconds', {}, s.lag);
  out.family(
    'sfw_schedule_fires_total',
    'counter',
    'Fire times by outcome: created (a session), skipped (the previous session was not final: overlap skip)',
  );
  out.sample('sfw_schedule_fires_total', { outcome: 'created' }, s.created);
  out.sample('sfw_schedule_fires_total', { outcome: 'skipped' }, s.skipped);
}

/** Writes the fleet-wide families (read from the database). */
export function writeFleet(out: Exposition, f: FleetSnapshot): void {
  const queued = f.depth.filter((d) => d.status === 'queued');
  const running = f.depth.filter((d) => d.status === 'running');
  out.family(
    'sfw_sessions_queued',
    'gauge',
    'Queued sessions by type and priority (scheduled ones included)',
  );
  for (const d of queued) out.sample('sfw_sessions_queued', { type: d.type, priority: d.priority }, d.count);
  out.family('sfw_sessions_running', 'gauge', 'Running (claimed) sessions by type and priority');
  for (const d of running)
    out.sample('sfw_sessions_running', { type: d.type, priority: d.priority }, d.count);
  out.family('sfw_sessions_active', 'gauge', 'Running sessions across the fleet');
  out.sample(
    'sfw_sessions_active',
    {},
    running.reduce((n, d) => n + d.count, 0),
  );
  out.family(
    'sfw_sessions_queued_oldest_age_seconds',
    'gauge',
    'Age of the oldest ready queued session by type (since its run_at)',
  );
  for (const o of f.oldest)
    out.sample('sfw_sessions_queued_oldest_age_seconds', { type: o.type }, o.ageSeconds);

  out.family(
    'sfw_sessions_finished_total',
    'counter',
    'Sessions that reached a final status, by type and status',
  );
  for (const t of f.finished)
    out.sample('sfw_sessions_finished_total', { type: t.type, status: t.status }, t.count);
  out.family(
    'sfw_session_claim_wait_seconds',
    'histogram',
    'Time from ready (enqueue, or run_at when scheduled or retried) to claim, by type',
  );
  for (const h of f.claimWait) out.histogram('sfw_session_claim_wait_seconds', { type: h.type }, h);
  out.family(
    'sfw_session_duration_seconds',
    'histogram',
    'Time from claim to final status, by type and final status',
  );
  for (const h of f.duration)
    out.histogram('sfw_session_duration_seconds', { type: h.type, status: h.status }, h);

  // Capacity counts runners that take new sessions: live and not draining (as the running status in /v1/queue).
  const live = f.runners.filter((r) => runnerState(r) === 'up');
  out.family('sfw_runners', 'gauge', 'Runners by state: up, draining, down (no heartbeat), stopped');
  for (const s of RUNNER_STATES)
    out.sample('sfw_runners', { state: s }, f.runners.filter((r) => runnerState(r) === s).length);
  out.family(
    'sfw_fleet_capacity',
    'gauge',
    'Global concurrency: the sum of max concurrency over live runners that take sessions (not draining)',
  );
  out.sample(
    'sfw_fleet_capacity',
    {},
    live.reduce((n, r) => n + r.maxConcurrency, 0),
  );
  out.family('sfw_scheduler_max_concurrency', 'gauge', 'scheduler_config.max_concurrency (per runner)');
  out.sample('sfw_scheduler_max_concurrency', {}, f.scheduler.maxConcurrency);
  out.family('sfw_scheduler_poll_interval_seconds', 'gauge', 'scheduler_config poll interval');
  out.sample('sfw_scheduler_poll_interval_seconds', {}, f.scheduler.pollIntervalMs / 1000);

  const perRunner: [string, 'gauge' | 'counter', string, (r: RunnerView) => number | null][] = [
    ['sfw_runner_up', 'gauge', '1 when the runner heartbeats and is not stopped', (r) => (r.live ? 1 : 0)],
    [
      'sfw_runner_draining',
      'gauge',
      '1 while the runner finishes in-flight sessions before stopping',
      (r) => (r.status === 'draining' ? 1 : 0),
    ],
    [
      'sfw_runner_stopped',
      'gauge',
      '1 when the runner reported its final stop',
      (r) => (r.status === 'stopped' ? 1 : 0),
    ],
    [
      'sfw_runner_last_heartbeat_seconds',
      'gauge',
      'runner_health.last_heartbeat as a Unix time',
      (r) => Date.parse(r.lastHeartbeat) / 1000,
    ],
    [
      'sfw_runner_heartbeat_age_seconds',
      'gauge',
      'Seconds since the last heartbeat, by the database clock',
      (r) => r.heartbeatAgeMs / 1000,
    ],
    [
      'sfw_runner_active_sessions',
      'gauge',
      'runner_health.active_sessions (reported by the runner)',
      (r) => r.activeSessions,
    ],
    [
      'sfw_runner_running_sessions',
      'gauge',
      'Sessions the database holds as running on the runner',
      (r) => r.runningSessions,
    ],
    ['sfw_runner_max_concurrency', 'gauge', 'runner_health.max_concurrency', (r) => r.maxConcurrency],
    [
      'sfw_runner_effective_concurrency',
      'gauge',
      'Concurrency the runner allows itself now (memory budget)',
      (r) => r.effectiveConcurrency,
    ],
    [
      'sfw_runner_sessions_executed_total',
      'counter',
      'runner_health.total_sessions_executed',
      (r) => r.totalSessionsExecuted,
    ],
    [
      'sfw_runner_failures_total',
      'counter',
      'runner_health.total_failures (failed and error)',
      (r) => r.totalFailures,
    ],
    ['sfw_runner_uptime_seconds', 'gauge', 'runner_health.uptime_seconds', (r) => r.uptimeSeconds],
    [
      'sfw_runner_memory_rss_bytes',
      'gauge',
      'Resident memory of the runner process',
      (r) => r.memoryRssBytes,
    ],
    [
      'sfw_runner_browser_memory_bytes',
      'gauge',
      "Memory of the runner's browsers",
      (r) => r.browserMemoryBytes,
    ],
  ];
  for (const [name, type, help, get] of perRunner) {
    out.family(name, type, help);
    for (const r of f.runners) {
      const v = get(r);
      if (v !== null) out.sample(name, { runner_id: r.runnerId }, v);
    }
  }
  out.family('sfw_runner_info', 'gauge', 'Runner identity (value 1)');
  for (const r of f.runners) {
    out.sample(
      'sfw_runner_info',
      { runner_id: r.runnerId, hostname: r.hostname ?? '', version: r.version ?? '', status: r.status },
      1,
    );
  }

  out.family('sfw_alerts_firing', 'gauge', "Alerts the API evaluates now (the guide's three), by name");
  for (const name of f.alertNames)
    out.sample('sfw_alerts_firing', { name }, f.alerts.filter((a) => a.name === name).length);
}

/** This replica's WebSockets: remote-browser clients (waiting for a runner's relay, or relayed) and live views. */
export function writeSockets(
  out: Exposition,
  replica: string,
  remote: { waiting: number; relayed: number },
  live: { viewers: number; sources: number; forwards: number },
): void {
  out.family(
    'sfw_remote_clients',
    'gauge',
    "Remote-browser clients (GET /v1/browser) connected to this API replica: waiting for a runner's relay, or relayed",
  );
  out.sample('sfw_remote_clients', { replica, state: 'waiting' }, remote.waiting);
  out.sample('sfw_remote_clients', { replica, state: 'relayed' }, remote.relayed);
  out.family(
    'sfw_live_viewers',
    'gauge',
    'Live viewers (GET /v1/sessions/:id/live) connected to this API replica',
  );
  out.sample('sfw_live_viewers', { replica }, live.viewers);
  out.family(
    'sfw_live_streams',
    'gauge',
    "Runners' live sockets sending this API replica frames (direct or passed on by another replica)",
  );
  out.sample('sfw_live_streams', { replica }, live.sources);
}
