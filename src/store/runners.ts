import type { RunnerStatus } from '../core/types.js';
import type { Queryable } from './db.js';
import type { LeaseRef } from './sessions.js';

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
  /** The session types it serves, as its heartbeats say ('{}' when not told). */
  types: string[];
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
  types?: string[];
  /** The leases the runner still holds, to renew. */
  sessions: LeaseRef[];
}

export interface HeartbeatOutcome {
  /** Sessions it holds that were cancelled: abort them. */
  cancel: string[];
  /** Sessions whose lease it no longer holds: stop reporting on them. */
  lost: string[];
}

/**
 * Heartbeats of many runners in one call (sfw_heartbeats): each runner's runner_health row (the guide's
 * fields and more; registered when new), then every lease they still hold renewed, fenced by token and
 * runner. One item per runner (the caller keeps the latest of each).
 */
export async function recordHeartbeats(
  db: Queryable,
  beats: HeartbeatUpdate[],
  leaseMs: number,
): Promise<Map<string, HeartbeatOutcome>> {
  const out = new Map<string, HeartbeatOutcome>();
  if (beats.length === 0) return out;
  const { rows } = await db.query<{ runner_id: string; cancel: string[]; lost: string[] }>(
    'SELECT runner_id, cancel, lost FROM sfw_heartbeats($1, $2)',
    [
      JSON.stringify(
        beats.map((h) => ({
          runner: h.runnerId,
          status: h.status ?? null,
          active: h.activeSessions,
          max: h.maxConcurrency,
          hostname: h.hostname ?? null,
          version: h.version ?? null,
          startedAt: h.startedAt ?? null,
          rss: h.memoryRssBytes ?? null,
          browser: h.browserMemoryBytes ?? null,
          effective: h.effectiveConcurrency ?? null,
          types: h.types ?? null,
          sessions: h.sessions,
        })),
      ),
      leaseMs,
    ],
  );
  for (const r of rows) out.set(r.runner_id, { cancel: r.cancel, lost: r.lost });
  return out;
}

export interface RunnerSeen {
  runnerId: string;
  maxConcurrency?: number;
  hostname?: string;
  version?: string;
  startedAt?: string;
  /** When it polled (default: now). */
  at?: Date;
}

/** Records that these runners polled (last_heartbeat = now), registering unknown ones, in one statement. */
export async function recordRunnersSeen(db: Queryable, runners: RunnerSeen[]): Promise<void> {
  if (runners.length === 0) return;
  await db.query('SELECT sfw_runners_seen($1)', [
    JSON.stringify(
      runners.map((r) => ({
        runner: r.runnerId,
        max: r.maxConcurrency ?? null,
        hostname: r.hostname ?? null,
        version: r.version ?? null,
        startedAt: r.startedAt ?? null,
        at: (r.at ?? new Date()).toISOString(),
      })),
    ),
  ]);
}

/** Final status of a runner that shut down. */
export async function markRunnerStopped(db: Queryable, runnerId: string): Promise<void> {
  await db.query(
    `INSERT INTO runner_health AS r (runner_id, status, active_sessions) VALUES ($1, 'stopped', 0)
     ON CONFLICT (runner_id) DO UPDATE SET status = 'stopped', active_sessions = 0, last_heartbeat = now()`,
    [runnerId],
  );
}

const RUNNER_SELECT = `
  SELECT r.*, coalesce(c.n, 0)::integer AS running_sessions,
         (extract(epoch FROM now() - r.last_heartbeat) * 1000)::bigint AS heartbeat_age_ms
  FROM runner_health r
  LEFT JOIN (SELECT runner_id AS claimed_by, count(*) AS n FROM session_running GROUP BY runner_id) c
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
 * The queue's shape. Queued counts come from the hot set (session_ready, session_held, session_scheduled), running ones
 * from their partial index, final statuses from the rollup the triggers keep (lifetime counts), so no query
 * walks the history.
 */
export async function queueStats(db: Queryable, liveWithinMs = 60_000): Promise<QueueStats> {
  const [status, prio, types, oldest, fleet] = await Promise.all([
    // Final statuses come from the session_stats rollup (migration 0002), not a count over the history.
    db.query<{ status: string; n: number }>(
      `SELECT 'queued' AS status, ((SELECT count(*) FROM session_ready) + (SELECT count(*) FROM session_held)
                                   + (SELECT count(*) FROM session_scheduled))::integer AS n
       UNION ALL
       SELECT 'running', count(*)::integer FROM session_running
       UNION ALL
       SELECT status, sum(count)::integer FROM session_stats WHERE kind = 'finished' GROUP BY status`,
    ),
    db.query<{ priority: number; n: number }>(
      `SELECT priority, count(*)::integer AS n
       FROM (SELECT priority FROM session_ready UNION ALL SELECT priority FROM session_held
             UNION ALL SELECT priority FROM session_scheduled) q
       GROUP BY priority ORDER BY priority DESC`,
    ),
    db.query<{ type: string; n: number }>(
      `SELECT type, count(*)::integer AS n
       FROM (SELECT type FROM session_ready UNION ALL SELECT type FROM session_held
             UNION ALL SELECT type FROM session_scheduled) q
       GROUP BY type ORDER BY n DESC, type`,
    ),
    db.query<{ age: number | null }>(
      `SELECT (extract(epoch FROM now() - min(created_at)) * 1000)::bigint AS age
       FROM (SELECT created_at FROM session_ready UNION ALL SELECT created_at FROM session_held) q`,
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
