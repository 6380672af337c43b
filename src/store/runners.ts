import type { RunnerStatus } from '../core/types.js';
import type { Queryable } from './db.js';

/** Queries about runners (runner_health), the scheduler config and the queue's shape. */

export interface RunnerRow {
  runner_id: string;
  status: RunnerStatus;
  last_heartbeat: Date;
  active_sessions: number;
  total_sessions_executed: number;
  total_failures: number;
  uptime_seconds: number;
  started_at: Date;
  max_concurrency: number;
  effective_concurrency: number | null;
  hostname: string | null;
  version: string | null;
  memory_rss_bytes: number | null;
  browser_memory_bytes: number | null;
  /** Sessions the database holds as running for this runner. */
  running_sessions: number;
  heartbeat_age_ms: number;
}

export interface HeartbeatUpdate {
  runnerId: string;
  activeSessions: number;
  maxConcurrency: number;
  status?: RunnerStatus;
  hostname?: string;
  version?: string;
  startedAt?: string;
  memoryRssBytes?: number;
  browserMemoryBytes?: number;
  effectiveConcurrency?: number;
}

/** Registers or updates the runner's runner_health row (the guide's five fields and more). */
export async function recordHeartbeat(db: Queryable, h: HeartbeatUpdate): Promise<void> {
  await db.query(
    `INSERT INTO runner_health AS r (runner_id, status, active_sessions, max_concurrency, hostname, version, started_at,
                                    memory_rss_bytes, browser_memory_bytes, effective_concurrency, last_heartbeat)
     VALUES ($1, coalesce($2, 'running'), $3, $4, $5, $6, coalesce($7::timestamptz, now()), $8, $9, $10, now())
     ON CONFLICT (runner_id) DO UPDATE SET
       status = coalesce($2, CASE WHEN r.status = 'stopped' THEN 'running' ELSE r.status END),
       last_heartbeat = now(),
       active_sessions = $3,
       max_concurrency = $4,
       hostname = coalesce($5, r.hostname),
       version = coalesce($6, r.version),
       started_at = coalesce($7::timestamptz, r.started_at),
       uptime_seconds = greatest(0, extract(epoch FROM now() - coalesce($7::timestamptz, r.started_at)))::bigint,
       memory_rss_bytes = coalesce($8, r.memory_rss_bytes),
       browser_memory_bytes = coalesce($9, r.browser_memory_bytes),
       effective_concurrency = coalesce($10, r.effective_concurrency)`,
    [
      h.runnerId,
      h.status ?? null,
      h.activeSessions,
      h.maxConcurrency,
      h.hostname ?? null,
      h.version ?? null,
      h.startedAt ?? null,
      h.memoryRssBytes ?? null,
      h.browserMemoryBytes ?? null,
      h.effectiveConcurrency ?? null,
    ],
  );
}

/** Final status of a runner that shut down. */
export async function markRunnerStopped(db: Queryable, runnerId: string): Promise<void> {
  await db.query(
    `INSERT INTO runner_health AS r (runner_id, status, active_sessions) VALUES ($1, 'stopped', 0)
     ON CONFLICT (runner_id) DO UPDATE SET status = 'stopped', active_sessions = 0, last_heartbeat = now(),
       uptime_seconds = greatest(0, extract(epoch FROM now() - r.started_at))::bigint`,
    [runnerId],
  );
}

const RUNNER_SELECT = `
  SELECT r.*, coalesce(c.n, 0)::integer AS running_sessions,
         (extract(epoch FROM now() - r.last_heartbeat) * 1000)::bigint AS heartbeat_age_ms
  FROM runner_health r
  LEFT JOIN (SELECT claimed_by, count(*) AS n FROM sessions WHERE status = 'running' GROUP BY claimed_by) c
    ON c.claimed_by = r.runner_id`;

/** All runners, newest heartbeat first; stopped runners older than the retention leave the list. */
export async function listRunners(db: Queryable, stoppedRetentionMs = 24 * 3600_000): Promise<RunnerRow[]> {
  const { rows } = await db.query<RunnerRow>(
    `${RUNNER_SELECT}
     WHERE r.status <> 'stopped' OR r.last_heartbeat > now() - make_interval(secs => $1 / 1000.0)
     ORDER BY r.last_heartbeat DESC, r.runner_id`,
    [stoppedRetentionMs],
  );
  return rows;
}

export async function getRunner(db: Queryable, runnerId: string): Promise<RunnerRow | undefined> {
  const { rows } = await db.query<RunnerRow>(`${RUNNER_SELECT} WHERE r.runner_id = $1`, [runnerId]);
  return rows[0];
}

export interface SchedulerConfigRow {
  max_concurrency: number;
  poll_interval_ms: number;
}

export async function getSchedulerConfig(db: Queryable): Promise<SchedulerConfigRow> {
  const { rows } = await db.query<SchedulerConfigRow>(
    'SELECT max_concurrency, poll_interval_ms FROM scheduler_config',
  );
  return rows[0] ?? { max_concurrency: 3, poll_interval_ms: 5000 };
}

export async function setSchedulerConfig(
  db: Queryable,
  patch: { maxConcurrency?: number; pollIntervalMs?: number },
): Promise<SchedulerConfigRow> {
  const { rows } = await db.query<SchedulerConfigRow>(
    `UPDATE scheduler_config SET max_concurrency = coalesce($1, max_concurrency),
       poll_interval_ms = coalesce($2, poll_interval_ms), updated_at = now()
     RETURNING max_concurrency, poll_interval_ms`,
    [patch.maxConcurrency ?? null, patch.pollIntervalMs ?? null],
  );
  return rows[0] ?? { max_concurrency: 3, poll_interval_ms: 5000 };
}

export interface QueueStats {
  byStatus: Record<string, number>;
  queuedByPriority: { priority: number; count: number }[];
  queuedByType: { type: string; count: number }[];
  oldestQueuedAgeMs: number | null;
  runnersLive: number;
  fleetCapacity: number;
}

/**
 * The queue's shape. Queued and running counts come from their small partial indexes; final statuses from
 * the rollup the triggers keep (lifetime counts), so no query walks the history.
 */
export async function queueStats(db: Queryable, liveWithinMs = 60_000): Promise<QueueStats> {
  const [status, prio, types, oldest, fleet] = await Promise.all([
    // Final statuses come from the session_stats rollup (migration 0002), not a count over the history.
    db.query<{ status: string; n: number }>(
      `SELECT status, count(*)::integer AS n FROM sessions WHERE status IN ('queued', 'running') GROUP BY status
       UNION ALL
       SELECT status, sum(count)::integer FROM session_stats WHERE kind = 'finished' GROUP BY status`,
    ),
    db.query<{ priority: number; n: number }>(
      `SELECT priority, count(*)::integer AS n FROM sessions WHERE status = 'queued' GROUP BY priority ORDER BY priority DESC`,
    ),
    db.query<{ type: string; n: number }>(
      `SELECT type, count(*)::integer AS n FROM sessions WHERE status = 'queued' GROUP BY type ORDER BY n DESC, type`,
    ),
    db.query<{ age: number | null }>(
      `SELECT (extract(epoch FROM now() - min(created_at)) * 1000)::bigint AS age FROM sessions
       WHERE status = 'queued' AND run_at <= now()`,
    ),
    db.query<{ live: number; capacity: number }>(
      `SELECT count(*)::integer AS live, coalesce(sum(max_concurrency), 0)::integer AS capacity FROM runner_health
       WHERE status = 'running' AND last_heartbeat > now() - make_interval(secs => $1 / 1000.0)`,
      [liveWithinMs],
    ),
  ]);
  const byStatus: Record<string, number> = {
    queued: 0,
    running: 0,
    succeeded: 0,
    failed: 0,
    error: 0,
    cancelled: 0,
  };
  for (const r of status.rows) byStatus[r.status] = r.n;
  return {
    byStatus,
    queuedByPriority: prio.rows.map((r) => ({ priority: r.priority, count: r.n })),
    queuedByType: types.rows.map((r) => ({ type: r.type, count: r.n })),
    oldestQueuedAgeMs: oldest.rows[0]?.age ?? null,
    runnersLive: fleet.rows[0]?.live ?? 0,
    fleetCapacity: fleet.rows[0]?.capacity ?? 0,
  };
}

/** Per-runner outcomes of sessions finished within the window (for the recent failure rate). */
export async function recentOutcomes(
  db: Queryable,
  windowMs: number,
): Promise<{ runnerId: string; executed: number; failures: number }[]> {
  const { rows } = await db.query<{ runner_id: string; executed: number; failures: number }>(
    `SELECT claimed_by AS runner_id, count(*)::integer AS executed,
            count(*) FILTER (WHERE status IN ('failed', 'error'))::integer AS failures
     FROM sessions
     WHERE finished_at > now() - make_interval(secs => $1 / 1000.0) AND claimed_by IS NOT NULL
     GROUP BY claimed_by`,
    [windowMs],
  );
  return rows.map((r) => ({ runnerId: r.runner_id, executed: r.executed, failures: r.failures }));
}
