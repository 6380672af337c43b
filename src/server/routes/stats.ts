import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AlertView, QueueView, RunnerView } from '../../protocol/schemas.js';
import { StatsTimeseries, StatsTimeseriesQuery } from '../../protocol/schemas.js';
import type { Queryable } from '../../store/db.js';
import { getSchedulerConfig, listRunners, recentOutcomes } from '../../store/runners.js';
import {
  finishedTotals,
  histograms,
  minuteFlow,
  oldestQueued,
  pruneMinuteFlow,
  queueDepth,
} from '../../store/metrics.js';
import {
  DEFAULT_ALERT_THRESHOLDS,
  DEFAULT_RUNNER_RETENTION_MS,
  evaluateAlerts,
  type AlertThresholds,
} from '../alerts.js';
import { scheduleStats } from '../../store/schedules.js';
import {
  Exposition,
  METRICS_CONTENT_TYPE,
  REPLICA,
  writeFleet,
  writeSchedules,
  writeSockets,
} from '../metrics.js';
import { writePendingDeliveries } from '../webhook-metrics.js';
import { writeLimits } from '../limit-metrics.js';
import { limitGauges } from '../../store/limits.js';
import { pendingDeliveries } from '../../store/webhooks.js';
import { retentionTotals } from '../../store/retention.js';
import { writeRetention } from '../retention-metrics.js';
import { runnerView } from '../views.js';
import { RUNNER_LIVE_MS } from './runners.js';

export const ALERT_NAMES = ['RunnerDown', 'HighFailureRate', 'QueueBackup'];
/** Per-minute chart rows are kept this long (a week). */
const MINUTE_RETENTION_MINUTES = 7 * 24 * 60;

export interface OpsSettings {
  thresholds: AlertThresholds;
  runnerRetentionMs: number;
}

/** The fleet view: runners (stopped ones leave after the retention) and the alerts evaluated on it. */
export async function fleetAlerts(
  db: Queryable,
  ops: OpsSettings,
): Promise<{ runners: RunnerView[]; alerts: AlertView[] }> {
  const [rows, depth, recent] = await Promise.all([
    listRunners(db, ops.runnerRetentionMs),
    queueDepth(db),
    recentOutcomes(db, ops.thresholds.recentWindowMs),
  ]);
  const runners = rows.map((r) => runnerView(r, RUNNER_LIVE_MS));
  // Only the queued count matters to the alerts; it comes from the small queued index, not the history.
  const queued = depth.filter((d) => d.status === 'queued').reduce((n, d) => n + d.count, 0);
  const queue: QueueView = {
    byStatus: { queued },
    queuedByPriority: [],
    queuedByType: [],
    oldestQueuedAgeMs: null,
    runnersLive: runners.filter((r) => r.live && r.status !== 'draining').length,
    fleetCapacity: runners
      .filter((r) => r.live && r.status !== 'draining')
      .reduce((n, r) => n + r.maxConcurrency, 0),
  };
  return { runners, alerts: evaluateAlerts(runners, queue, recent, ops.thresholds) };
}

export function opsSettings(app: FastifyInstance): OpsSettings {
  return {
    thresholds: app.deps.alertThresholds ?? DEFAULT_ALERT_THRESHOLDS,
    runnerRetentionMs: app.deps.runnerRetentionMs ?? DEFAULT_RUNNER_RETENTION_MS,
  };
}

export async function statsRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;
  let lastPrune = 0;

  app.get('/metrics', { config: { scope: 'ops' } }, async (_req, reply) => {
    const [depth, oldest, claimWait, duration, finished, scheduler, fleet, pending] = await Promise.all([
      queueDepth(db),
      oldestQueued(db),
      histograms(db, 'claim_wait'),
      histograms(db, 'duration'),
      finishedTotals(db),
      getSchedulerConfig(db),
      fleetAlerts(db, opsSettings(app)),
      pendingDeliveries(db),
    ]);
    const out = new Exposition();
    writeFleet(out, {
      depth,
      oldest,
      claimWait,
      duration,
      finished,
      runners: fleet.runners,
      alerts: fleet.alerts,
      alertNames: ALERT_NAMES,
      scheduler: { maxConcurrency: scheduler.max_concurrency, pollIntervalMs: scheduler.poll_interval_ms },
    });
    writePendingDeliveries(out, pending);
    app.webhookSender?.metrics.write(out, REPLICA);
    writeSchedules(out, await scheduleStats(db));
    writeLimits(out, await limitGauges(db));
    writeRetention(out, await retentionTotals(db), app.deps.retention);
    app.requestMetrics.write(out, REPLICA);
    writeSockets(out, REPLICA, app.relayHub.counts(), app.live.counts());
    return reply.type(METRICS_CONTENT_TYPE).send(out.text());
  });

  app.get(
    '/v1/stats/timeseries',
    {
      config: { scope: 'client' },
      schema: { querystring: StatsTimeseriesQuery, response: { 200: StatsTimeseries } },
    },
    async (req) => {
      const minutes = req.query.minutes ?? 60;
      const [points, depth] = await Promise.all([minuteFlow(db, minutes), queueDepth(db)]);
      if (Date.now() - lastPrune > 3600_000) {
        lastPrune = Date.now();
        await pruneMinuteFlow(db, MINUTE_RETENTION_MINUTES);
      }
      // Depth at the end of each minute: today's depth minus the net inflow of the minutes after it.
      let queued = depth.filter((d) => d.status === 'queued').reduce((n, d) => n + d.count, 0);
      const depthAtEnd = new Array<number>(points.length);
      for (let i = points.length - 1; i >= 0; i--) {
        depthAtEnd[i] = Math.max(0, queued);
        const p = points[i];
        if (p) queued -= p.enteredQueue - p.leftQueue;
      }
      return {
        minutes,
        points: points.map((p, i) => ({
          t: p.minute.toISOString(),
          queued: depthAtEnd[i] ?? 0,
          enqueued: p.enteredQueue,
          claimed: p.claimed,
          avgClaimWaitMs: p.claimed > 0 ? Math.round((p.claimWaitSum / p.claimed) * 1000) : null,
          finished: p.finished,
          failed: p.failed,
        })),
      };
    },
  );
}
