import { uuidv7 } from '../core/ids.js';
import { NotFoundError, SfwError } from '../core/errors.js';
import type { SessionStatus } from '../core/types.js';
import type { ScheduleCatchUp, ScheduleOverlap, ScheduleSessionTemplate } from '../protocol/schemas.js';
import { withTransaction, type Db, type Queryable } from './db.js';
import { newSessionRow, SESSIONS_CHANNEL } from './sessions.js';

/**
 * Queries about schedules: create, read, list, change, delete, and the firing pass every API replica runs.
 * Fire times are computed by the caller (croner, in the API); this file only stores them.
 */

export interface ScheduleRow {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  session: ScheduleSessionTemplate;
  catch_up: ScheduleCatchUp;
  overlap: ScheduleOverlap;
  next_run_at: Date | null;
  last_run_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** One session a schedule made, as its recent runs show it. */
export interface ScheduleRunRow {
  id: string;
  status: SessionStatus;
  scheduled_for: Date;
  created_at: Date;
  finished_at: Date | null;
  error_message: string | null;
}

export interface ScheduleFields {
  name: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  session: ScheduleSessionTemplate;
  catchUp: ScheduleCatchUp;
  overlap: ScheduleOverlap;
  nextRunAt: Date | null;
}

/** The name is taken by another schedule: nothing was written. */
export class ScheduleNameTakenError extends SfwError {
  override readonly name = 'ScheduleNameTakenError';
  constructor(scheduleName: string, path: string) {
    super('CONFLICT', `${path}: a schedule named "${scheduleName}" exists already: choose another name`, {
      path,
    });
  }
}

/** Postgres' unique violation on schedules.name → ScheduleNameTakenError. */
function nameTaken(name: string, path: string) {
  return (err: unknown): never => {
    const e = err as { code?: string; constraint?: string };
    if (e.code === '23505' && e.constraint === 'schedules_name_key')
      throw new ScheduleNameTakenError(name, path);
    throw err;
  };
}

export async function insertSchedule(db: Queryable, s: ScheduleFields): Promise<ScheduleRow> {
  const { rows } = await db
    .query<ScheduleRow>(
      `INSERT INTO schedules (id, name, cron, timezone, enabled, session, catch_up, overlap, next_run_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
      [
        uuidv7(),
        s.name,
        s.cron,
        s.timezone,
        s.enabled,
        JSON.stringify(s.session),
        s.catchUp,
        s.overlap,
        s.nextRunAt,
      ],
    )
    .catch(nameTaken(s.name, 'body.name'));
  return rows[0]!;
}

export async function getSchedule(db: Queryable, id: string): Promise<ScheduleRow> {
  const { rows } = await db.query<ScheduleRow>('SELECT * FROM schedules WHERE id = $1', [id]);
  if (!rows[0]) throw new NotFoundError(`schedule ${id}`);
  return rows[0];
}

/** Schedules by name, `limit` a page; `after` is the last name of the previous page. */
export async function listSchedules(
  db: Queryable,
  opts: { limit: number; after?: string },
): Promise<{ rows: ScheduleRow[]; more: boolean }> {
  const { rows } = await db.query<ScheduleRow>(
    `SELECT * FROM schedules WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2`,
    [opts.after ?? null, opts.limit + 1],
  );
  const more = rows.length > opts.limit;
  return { rows: more ? rows.slice(0, opts.limit) : rows, more };
}

/** The latest `n` sessions of each schedule, newest fire time first (the fire-time key's index). */
export async function recentRuns(
  db: Queryable,
  ids: string[],
  n: number,
): Promise<Map<string, ScheduleRunRow[]>> {
  const out = new Map<string, ScheduleRunRow[]>(ids.map((id) => [id, []]));
  if (ids.length === 0) return out;
  const { rows } = await db.query<ScheduleRunRow & { schedule_id: string }>(
    `SELECT r.* FROM unnest($1::uuid[]) AS sc(id)
     CROSS JOIN LATERAL (
       SELECT s.id, s.schedule_id, s.status, s.scheduled_for, s.created_at, s.finished_at,
              left(s.error_message, 200) AS error_message
       FROM sessions s WHERE s.schedule_id = sc.id ORDER BY s.scheduled_for DESC LIMIT $2
     ) r`,
    [ids, n],
  );
  for (const { schedule_id, ...r } of rows) out.get(schedule_id)?.push(r);
  return out;
}

/**
 * Changes a schedule under its row lock: `change` sees the current row (and may throw, changing nothing)
 * and answers the fields to store. A firing pass holding the row waits for it, or the change waits for the
 * pass, so a new cron or a disable is never overwritten by a pass that read the old one.
 */
export async function updateSchedule(
  db: Db,
  id: string,
  change: (current: ScheduleRow) => ScheduleFields,
): Promise<ScheduleRow> {
  return withTransaction(db, async (client) => {
    const { rows } = await client.query<ScheduleRow>('SELECT * FROM schedules WHERE id = $1 FOR UPDATE', [
      id,
    ]);
    if (!rows[0]) throw new NotFoundError(`schedule ${id}`);
    const s = change(rows[0]);
    const { rows: updated } = await client
      .query<ScheduleRow>(
        `UPDATE schedules SET name = $2, cron = $3, timezone = $4, enabled = $5, session = $6, catch_up = $7,
                overlap = $8, next_run_at = $9, updated_at = now()
         WHERE id = $1 RETURNING *`,
        [
          id,
          s.name,
          s.cron,
          s.timezone,
          s.enabled,
          JSON.stringify(s.session),
          s.catchUp,
          s.overlap,
          s.nextRunAt,
        ],
      )
      .catch(nameTaken(s.name, 'body.name'));
    return updated[0]!;
  });
}

/** Deletes a schedule; its sessions stay, with its id. False when there was none. */
export async function deleteSchedule(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM schedules WHERE id = $1', [id]);
  return (rowCount ?? 0) > 0;
}

// ---- firing --------------------------------------------------------------------------------------------

/** A due schedule as the firing pass reads it. */
export interface DueScheduleRow {
  id: string;
  cron: string;
  timezone: string;
  catch_up: ScheduleCatchUp;
  overlap: ScheduleOverlap;
  session: ScheduleSessionTemplate;
  next_run_at: Date;
  /** Its latest session is queued or running. */
  busy: boolean;
}

/** What the caller decided for one due schedule (see planFires in src/server/cron.ts). */
export interface FireDecision {
  fire: Date[];
  skipped: number;
  nextRunAt: Date | null;
}

export interface FireOutcome {
  /** Due schedules taken by this pass. */
  schedules: number;
  /** Sessions made, with their lag (fire time → created) in seconds. */
  created: { scheduleId: string; sessionId: string; scheduledFor: Date; lagSeconds: number }[];
  skipped: number;
}

/** Upper bounds (seconds) of the schedule lag histogram; the last bucket (+Inf) is implied. */
export const SCHEDULE_LAG_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * One firing pass, one transaction: take up to `limit` due schedules (FOR UPDATE SKIP LOCKED, so replicas
 * share them out), let `decide` compute each one's fire times and next fire time at the database's now(),
 * insert their sessions ON CONFLICT (schedule_id, scheduled_for) DO NOTHING, advance next_run_at, wake the
 * runners (NOTIFY) and count the lag. The unique key makes each fire time one session even if two passes
 * ever took the same schedule.
 */
export async function fireDueSchedules(
  db: Db,
  decide: (s: DueScheduleRow, now: Date) => FireDecision,
  limit: number,
  /** Fills in what a session of the template's type gets by default (its type's registered defaults). */
  withDefaults?: (templates: ScheduleSessionTemplate[]) => Promise<ScheduleSessionTemplate[]>,
): Promise<FireOutcome> {
  return withTransaction(db, async (client) => {
    const { rows: due } = await client.query<DueScheduleRow & { now: Date }>(
      `SELECT s.id, s.cron, s.timezone, s.catch_up, s.overlap, s.session, s.next_run_at, now() AS now,
              (s.overlap = 'skip' AND coalesce((
                SELECT x.status IN ('queued', 'running') FROM sessions x
                WHERE x.schedule_id = s.id ORDER BY x.scheduled_for DESC LIMIT 1), false)) AS busy
       FROM schedules s
       WHERE s.enabled AND s.next_run_at <= now()
       ORDER BY s.next_run_at
       LIMIT $1
       FOR UPDATE OF s SKIP LOCKED`,
      [limit],
    );
    const out: FireOutcome = { schedules: due.length, created: [], skipped: 0 };
    if (due.length === 0) return out;
    const sessions: Record<string, unknown>[] = [];
    const advance: { id: string; next_run_at: Date | null; last_run_at: Date | null }[] = [];
    const templates = withDefaults ? await withDefaults(due.map((s) => s.session)) : undefined;
    for (const [i, s] of due.entries()) {
      const d = decide(s, s.now);
      const template = templates?.[i] ?? s.session;
      out.skipped += d.skipped;
      for (const at of d.fire)
        sessions.push({ ...newSessionRow(template), schedule_id: s.id, scheduled_for: at.toISOString() });
      advance.push({ id: s.id, next_run_at: d.nextRunAt, last_run_at: d.fire[d.fire.length - 1] ?? null });
    }
    const { rows: made } = await client.query<{
      id: string;
      schedule_id: string;
      scheduled_for: Date;
      lag_s: number;
    }>(
      `WITH src AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
           id uuid, type text, input jsonb, priority integer, timeout_ms integer, max_attempts integer,
           retry_on text[], artifact_options jsonb, browser_options jsonb, schedule_id uuid,
           scheduled_for timestamptz, state_options jsonb, concurrency_key text, tags text[])
       ), ins AS (
         INSERT INTO sessions (id, type, input, priority, run_at, timeout_ms, max_attempts, retry_on,
                               artifact_options, browser_options, schedule_id, scheduled_for, state_options,
                               concurrency_key, tags)
         SELECT id, type, input, priority, now(), timeout_ms, max_attempts, retry_on, artifact_options,
                browser_options, schedule_id, scheduled_for, state_options, concurrency_key, coalesce(tags, '{}')
         FROM src ORDER BY id
         ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING
         RETURNING id, schedule_id, scheduled_for, created_at
       ), adv AS (
         UPDATE schedules s SET next_run_at = a.next_run_at, last_run_at = greatest(s.last_run_at, a.last_run_at)
         FROM jsonb_to_recordset($2::jsonb) AS a(id uuid, next_run_at timestamptz, last_run_at timestamptz)
         WHERE s.id = a.id
         RETURNING s.id
       ), wake AS (
         SELECT pg_notify('${SESSIONS_CHANNEL}', '') FROM (SELECT 1 FROM ins LIMIT 1) q
       ), made AS (
         SELECT ins.*, greatest(extract(epoch FROM ins.created_at - ins.scheduled_for)::float8, 0) AS lag_s FROM ins
       ), ev AS (
         -- The lag's bucket as Prometheus counts it: the index of the first bound >= the lag.
         SELECT 'lag' AS kind, (SELECT count(*) FROM unnest($3::float8[]) b WHERE b < made.lag_s)::smallint AS bucket,
                1::bigint AS n, made.lag_s AS v FROM made
         UNION ALL SELECT 'created', 0::smallint, count(*), 0 FROM ins HAVING count(*) > 0
         UNION ALL SELECT 'skipped', 0::smallint, $4::bigint, 0 WHERE $4::bigint > 0
       ), counted AS (
         -- Only firing passes write these rows, keys in sorted order (two passes sharing a shard lock
         -- alike); so taking them before the statistics the triggers write at the statement's end orders
         -- this against no other writer.
         INSERT INTO schedule_stats AS t (kind, bucket, shard, count, sum)
         SELECT kind, bucket, (pg_backend_pid() % 8)::smallint, sum(n), sum(v) FROM ev
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
         ON CONFLICT (kind, bucket, shard) DO UPDATE SET count = t.count + excluded.count, sum = t.sum + excluded.sum
         RETURNING 1
       )
       SELECT made.id, made.schedule_id, made.scheduled_for, made.lag_s
       FROM made, (SELECT count(*) FROM adv) a, (SELECT count(*) FROM wake) w, (SELECT count(*) FROM counted) c`,
      [JSON.stringify(sessions), JSON.stringify(advance), SCHEDULE_LAG_BOUNDS, out.skipped],
    );
    out.created = made.map((m) => ({
      scheduleId: m.schedule_id,
      sessionId: m.id,
      scheduledFor: m.scheduled_for,
      lagSeconds: m.lag_s,
    }));
    return out;
  });
}

/** Milliseconds until the earliest enabled schedule is due, by the database's clock (null: none is). */
export async function msUntilNextDue(db: Queryable): Promise<number | null> {
  const { rows } = await db.query<{ ms: number | null }>(
    `SELECT (extract(epoch FROM min(next_run_at) - clock_timestamp()) * 1000)::float8 AS ms
     FROM schedules WHERE enabled AND next_run_at IS NOT NULL`,
  );
  return rows[0]?.ms ?? null;
}

export interface ScheduleStats {
  enabled: number;
  disabled: number;
  lag: { bounds: number[]; cumulative: number[]; count: number; sum: number };
  created: number;
  skipped: number;
}

/** Fleet-wide schedule numbers for /metrics: counts by state, the lag histogram, fires by outcome. */
export async function scheduleStats(db: Queryable): Promise<ScheduleStats> {
  const [{ rows: counts }, { rows: stats }] = await Promise.all([
    db.query<{ enabled: number; disabled: number }>(
      `SELECT count(*) FILTER (WHERE enabled)::bigint AS enabled, count(*) FILTER (WHERE NOT enabled)::bigint AS disabled
       FROM schedules`,
    ),
    db.query<{ kind: string; bucket: number; count: number; sum: number }>(
      `SELECT kind, bucket, sum(count)::bigint AS count, sum(sum)::float8 AS sum
       FROM schedule_stats GROUP BY kind, bucket ORDER BY kind, bucket`,
    ),
  ]);
  const perBucket = new Array<number>(SCHEDULE_LAG_BOUNDS.length + 1).fill(0);
  const out: ScheduleStats = {
    enabled: counts[0]?.enabled ?? 0,
    disabled: counts[0]?.disabled ?? 0,
    lag: { bounds: SCHEDULE_LAG_BOUNDS, cumulative: [], count: 0, sum: 0 },
    created: 0,
    skipped: 0,
  };
  for (const r of stats) {
    if (r.kind === 'lag') {
      const i = Math.min(Math.max(r.bucket, 0), SCHEDULE_LAG_BOUNDS.length);
      perBucket[i] = (perBucket[i] ?? 0) + r.count;
      out.lag.count += r.count;
      out.lag.sum += r.sum;
    } else if (r.kind === 'created') out.created += r.count;
    else if (r.kind === 'skipped') out.skipped += r.count;
  }
  let acc = 0;
  out.lag.cumulative = perBucket.slice(0, SCHEDULE_LAG_BOUNDS.length).map((n) => (acc += n));
  return out;
}
