import type { Queryable } from './db.js';

/**
 * Fleet-wide numbers for /metrics and the dashboard. Histograms and totals come from the rollups the
 * triggers keep (session_stats, session_minute_stats); queue depth from the partial
 * indexes of queued and running sessions. Nothing here walks the finished history.
 */

export type StatsKind = 'claim_wait' | 'duration' | 'finished';

export interface HistogramSeries {
  type: string;
  status: string;
  /** Upper bounds in seconds, ascending; the last bucket (+Inf) is implied. */
  bounds: number[];
  /** Cumulative counts per bound, then the +Inf count (= count). */
  cumulative: number[];
  count: number;
  sum: number;
}

/** Cumulative histograms of one kind, by type and status. */
export async function histograms(db: Queryable, kind: 'claim_wait' | 'duration'): Promise<HistogramSeries[]> {
  const [{ rows: boundRows }, { rows }] = await Promise.all([
    db.query<{ bounds: number[] }>('SELECT sfw_stats_bounds($1) AS bounds', [kind]),
    db.query<{ type: string; status: string; bucket: number; count: number; sum: number }>(
      `SELECT type, status, bucket, sum(count)::bigint AS count, sum(sum)::float8 AS sum
       FROM session_stats WHERE kind = $1 GROUP BY type, status, bucket ORDER BY type, status, bucket`,
      [kind],
    ),
  ]);
  const bounds = boundRows[0]?.bounds ?? [];
  const series = new Map<string, HistogramSeries & { perBucket: number[] }>();
  for (const r of rows) {
    const key = `${r.type}\u0000${r.status}`;
    let s = series.get(key);
    if (!s) {
      s = {
        type: r.type,
        status: r.status,
        bounds,
        cumulative: [],
        count: 0,
        sum: 0,
        perBucket: new Array<number>(bounds.length + 1).fill(0),
      };
      series.set(key, s);
    }
    // sfw_stats_bucket: the index of the first bound >= the value (Prometheus' `le`); n is +Inf.
    const i = Math.min(Math.max(r.bucket, 0), bounds.length);
    s.perBucket[i] = (s.perBucket[i] ?? 0) + r.count;
    s.count += r.count;
    s.sum += r.sum;
  }
  return [...series.values()].map(({ perBucket, ...s }) => {
    let acc = 0;
    return { ...s, cumulative: perBucket.map((n) => (acc += n)) };
  });
}

/** Sessions that reached a final status, by type and status (lifetime). */
export async function finishedTotals(
  db: Queryable,
): Promise<{ type: string; status: string; count: number }[]> {
  const { rows } = await db.query<{ type: string; status: string; count: number }>(
    `SELECT type, status, sum(count)::bigint AS count FROM session_stats WHERE kind = 'finished'
     GROUP BY type, status ORDER BY type, status`,
  );
  return rows;
}

export interface QueueDepthRow {
  status: 'queued' | 'running';
  type: string;
  priority: number;
  count: number;
}

/** Queued (the hot set) and running (their partial index) sessions by type and priority. */
export async function queueDepth(db: Queryable): Promise<QueueDepthRow[]> {
  const { rows } = await db.query<QueueDepthRow>(
    `SELECT 'queued' AS status, type, priority, count(*)::integer AS count
     FROM (SELECT type, priority FROM session_ready UNION ALL SELECT type, priority FROM session_held
           UNION ALL SELECT type, priority FROM session_scheduled) q
     GROUP BY type, priority
     UNION ALL
     SELECT 'running', type, priority, count(*)::integer FROM session_running GROUP BY type, priority
     ORDER BY 1, 2, 3`,
  );
  return rows;
}

/** Age in seconds of the oldest ready queued session by type (run_at has come; held by a limit or not). */
export async function oldestQueued(db: Queryable): Promise<{ type: string; ageSeconds: number }[]> {
  const { rows } = await db.query<{ type: string; age: number }>(
    `SELECT type, extract(epoch FROM now() - min(run_at))::float8 AS age
     FROM (SELECT type, run_at FROM session_ready UNION ALL SELECT type, run_at FROM session_held) q
     GROUP BY type ORDER BY type`,
  );
  return rows.map((r) => ({ type: r.type, ageSeconds: Math.max(0, r.age) }));
}

export interface MinutePoint {
  minute: Date;
  enteredQueue: number;
  leftQueue: number;
  claimed: number;
  claimWaitSum: number;
  finished: number;
  failed: number;
}

/** Per-minute queue flow over the last `minutes` minutes (missing minutes are zeros), oldest first. */
export async function minuteFlow(db: Queryable, minutes: number): Promise<MinutePoint[]> {
  const { rows } = await db.query<{
    minute: Date;
    entered: number;
    left: number;
    claimed: number;
    wait: number;
    finished: number;
    failed: number;
  }>(
    `WITH span AS (
       SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                              date_trunc('minute', now()), interval '1 minute') AS minute
     )
     SELECT span.minute,
            coalesce(sum(m.entered_queue), 0)::bigint AS entered,
            coalesce(sum(m.left_queue), 0)::bigint AS left,
            coalesce(sum(m.claimed), 0)::bigint AS claimed,
            coalesce(sum(m.claim_wait_sum), 0)::float8 AS wait,
            coalesce(sum(m.finished), 0)::bigint AS finished,
            coalesce(sum(m.failed), 0)::bigint AS failed
     FROM span LEFT JOIN session_minute_stats m ON m.minute = span.minute
     GROUP BY span.minute ORDER BY span.minute`,
    [minutes],
  );
  return rows.map((r) => ({
    minute: r.minute,
    enteredQueue: r.entered,
    leftQueue: r.left,
    claimed: r.claimed,
    claimWaitSum: r.wait,
    finished: r.finished,
    failed: r.failed,
  }));
}

/** Drops per-minute rows older than the retention (they only feed charts). */
export async function pruneMinuteFlow(db: Queryable, keepMinutes: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM session_minute_stats WHERE minute < now() - make_interval(mins => $1)`,
    [keepMinutes],
  );
  return rowCount ?? 0;
}
