import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.js';
import { histograms } from '../../src/store/metrics.js';
import {
  getRunner,
  markRunnerStopped,
  recordHeartbeats,
  recordRunnersSeen,
} from '../../src/store/runners.js';
import { exchange, insertSessions, requeueSessions } from '../../src/store/sessions.js';
import { freshDb } from '../helpers/db.js';

// The statistics behind /metrics and the dashboard, checked with values whose buckets are known.

let db: Db;
beforeAll(async () => {
  ({ db } = await freshDb('statsacc'));
});
afterAll(async () => {
  await db.end();
});

async function claimAll(type: string, n: number) {
  return (
    await exchange(db, {
      runnerId: `r-${type}`,
      types: [type],
      slots: n,
      maxConcurrency: 1000,
      leaseMs: 30_000,
    })
  ).claimed();
}

/** Cumulative count of the claim-wait histogram of `type` at each bound (`+Inf` last). */
async function claimWait(type: string): Promise<{ le: Map<string, number>; count: number; sum: number }> {
  const s = (await histograms(db, 'claim_wait')).find((h) => h.type === type);
  if (!s) throw new Error(`no claim-wait series for ${type}`);
  const le = new Map<string, number>();
  s.bounds.forEach((b, i) => le.set(String(b), s.cumulative[i]!));
  le.set('+Inf', s.cumulative[s.bounds.length]!);
  return { le, count: s.count, sum: s.sum };
}

describe('histograms', () => {
  it('count a value in the first bucket whose bound is at or above it', async () => {
    const type = 'buckets';
    const waits = [2.3, 2.7, 3.5, 5000]; // seconds: under 2.5, under 5 (twice), past the last bound (3600)
    await insertSessions(
      db,
      waits.map(() => ({ type })),
    );
    // Each session became ready `wait` seconds ago (run_at is where the claim wait counts from).
    await db.query(
      `UPDATE sessions s SET run_at = now() - make_interval(secs => w.wait)
       FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM sessions WHERE type = $1) o,
            unnest($2::float8[]) WITH ORDINALITY AS w(wait, k)
       WHERE s.id = o.id AND o.k = w.k`,
      [type, waits],
    );
    expect(await claimAll(type, 4)).toHaveLength(4);
    const h = await claimWait(type);
    expect(h.count).toBe(4);
    expect(h.le.get('1')).toBe(0);
    expect(h.le.get('2.5')).toBe(1);
    expect(h.le.get('5')).toBe(3);
    expect(h.le.get('3600')).toBe(3);
    expect(h.le.get('+Inf')).toBe(4);
  });

  it('file a value equal to a bound under that bound (Prometheus le is inclusive)', async () => {
    const { rows } = await db.query<{ at: number; over: number; under: number; past: number; neg: number }>(
      `SELECT sfw_stats_bucket('claim_wait', 2.5) AS at, sfw_stats_bucket('claim_wait', 2.5000001) AS over,
              sfw_stats_bucket('claim_wait', 2.4999999) AS under, sfw_stats_bucket('claim_wait', 1e6) AS past,
              sfw_stats_bucket('claim_wait', 0) AS neg`,
    );
    const bounds = (await db.query<{ b: number[] }>(`SELECT sfw_stats_bounds('claim_wait') AS b`)).rows[0]!.b;
    const i = bounds.indexOf(2.5);
    expect(rows[0]).toEqual({ at: i, over: i + 1, under: i, past: bounds.length, neg: 0 });
  });
});

describe('claim wait after a hand-back', () => {
  it('counts from when the session was ready again, and counts one claim for the attempt', async () => {
    const type = 'handback-wait';
    await insertSessions(db, [{ type }]);
    const [c] = await claimAll(type, 1);
    // It ran for an hour before its runner stopped and handed it back.
    await db.query(
      `UPDATE sessions SET run_at = run_at - interval '1 hour', claimed_at = claimed_at - interval '1 hour' WHERE id = $1`,
      [c!.id],
    );
    const before = await claimWait(type);
    expect(await requeueSessions(db, `r-${type}`, [{ id: c!.id, leaseToken: c!.leaseToken }])).toEqual([
      c!.id,
    ]);
    const [again] = await claimAll(type, 1);
    expect(again!.attempt).toBe(1);
    const after = await claimWait(type);
    expect(after.count).toBe(before.count); // the same attempt: no second claim
    expect(after.sum - before.sum).toBeLessThan(60); // and never the hour it ran as queue wait
    const { rows } = await db.query<{ ready_for: number }>(
      `SELECT extract(epoch FROM claimed_at - run_at)::float8 AS ready_for FROM sessions WHERE id = $1`,
      [c!.id],
    );
    expect(rows[0]!.ready_for).toBeLessThan(60);
  });
});

describe('runner uptime', () => {
  it('is its last word less its start, whichever write came last', async () => {
    const startedAt = new Date(Date.now() - 3600_000).toISOString();
    const uptime = async () => Number((await getRunner(db, 'uptime-runner'))!.uptime_seconds);
    await recordHeartbeats(
      db,
      [{ runnerId: 'uptime-runner', activeSessions: 0, maxConcurrency: 3, startedAt, sessions: [] }],
      30_000,
    );
    expect(await uptime()).toBeGreaterThanOrEqual(3599);
    expect(await uptime()).toBeLessThan(3660);
    await recordRunnersSeen(db, [
      { runnerId: 'uptime-runner', at: new Date(Date.parse(startedAt) + 7200_000) },
    ]);
    expect(await uptime()).toBe(7200);
    await markRunnerStopped(db, 'uptime-runner');
    expect(await uptime()).toBeGreaterThanOrEqual(3599);
    expect(await uptime()).toBeLessThan(3660);
  });
});
