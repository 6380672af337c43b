import type { AlertView, QueueView, RunnerView } from '../protocol/schemas.js';

/** The guide's three alerts, with thresholds an operator can change. */
export interface AlertThresholds {
  /** Runner down: no heartbeat for this long and not stopped (guide: 1 minute). */
  runnerDownMs: number;
  /** High failure rate: total_failures / total_sessions_executed above this (guide: 0.1). */
  failureRate: number;
  /** Minimum executed sessions before a runner's failure rate is judged. */
  failureRateMinSessions: number;
  /** Queue backup: queued above runners × max_concurrency × this (guide: 10). */
  queueBackupFactor: number;
  /** The recent window of the failure rate, so an old bad day does not alert forever. */
  recentWindowMs: number;
}

export const DEFAULT_ALERT_THRESHOLDS: AlertThresholds = {
  runnerDownMs: 60_000,
  failureRate: 0.1,
  failureRateMinSessions: 10,
  queueBackupFactor: 10,
  recentWindowMs: 15 * 60_000,
};

/** Stopped runners leave the fleet view after this long. */
export const DEFAULT_RUNNER_RETENTION_MS = 24 * 3600_000;

export interface RecentFailures {
  runnerId: string;
  executed: number;
  failures: number;
}

export function evaluateAlerts(
  runners: RunnerView[],
  queue: QueueView,
  recent: RecentFailures[],
  t: AlertThresholds = DEFAULT_ALERT_THRESHOLDS,
): AlertView[] {
  const alerts: AlertView[] = [];
  for (const r of runners) {
    if (r.status !== 'stopped' && r.heartbeatAgeMs > t.runnerDownMs) {
      alerts.push({
        name: 'RunnerDown',
        severity: 'critical',
        runnerId: r.runnerId,
        message: `runner ${r.runnerId} last heartbeat ${Math.round(r.heartbeatAgeMs / 1000)} s ago`,
        value: r.heartbeatAgeMs / 1000,
        threshold: t.runnerDownMs / 1000,
      });
    }
  }
  const recentByRunner = new Map(recent.map((x) => [x.runnerId, x]));
  for (const r of runners) {
    if (r.totalSessionsExecuted < t.failureRateMinSessions) continue;
    const lifetime = r.totalFailures / r.totalSessionsExecuted;
    const w = recentByRunner.get(r.runnerId);
    // Lifetime rate as the guide says, and the recent window too, so an old bad day does not alert forever.
    const recentRate = w && w.executed > 0 ? w.failures / w.executed : 0;
    if (lifetime > t.failureRate && recentRate > t.failureRate) {
      alerts.push({
        name: 'HighFailureRate',
        severity: 'warning',
        runnerId: r.runnerId,
        message: `runner ${r.runnerId} fails ${(lifetime * 100).toFixed(1)}% of sessions (${(recentRate * 100).toFixed(1)}% recently)`,
        value: lifetime,
        threshold: t.failureRate,
      });
    }
  }
  // Draining runners take no new sessions: they are not capacity.
  const liveRunners = runners.filter((r) => r.live && r.status !== 'draining');
  const capacity = liveRunners.reduce((sum, r) => sum + r.maxConcurrency, 0);
  const queued = queue.byStatus.queued ?? 0;
  const limit = capacity * t.queueBackupFactor;
  if (queued > limit) {
    alerts.push({
      name: 'QueueBackup',
      severity: 'warning',
      message: `${queued} sessions queued, above ${limit} (${liveRunners.length} live runners × max_concurrency × ${t.queueBackupFactor})`,
      value: queued,
      threshold: limit,
    });
  }
  return alerts;
}
