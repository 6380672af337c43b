import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.js';
import {
  completeSessions,
  exchange,
  insertSessions,
  reapSessions,
  requeueSessions,
} from '../../src/store/sessions.js';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import { recordHeartbeats } from '../../src/store/runners.js';
import { freshDb } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

// Every writer of several running sessions at once locks them in id order, whatever its plan reads first.
// A writer that locked them in the order it scanned them could take B before A while another holds A and
// waits for B: a deadlock, answered 503 and retried, but a lost round trip every time. The test holds the
// higher id, starts the writer, and checks that it already holds the lower one while it waits.

let db: Db;
beforeAll(async () => {
  ({ db } = await freshDb('lockorder'));
});
afterAll(async () => {
  await db.end();
});

const RUNNER = 'lock-race';

/** Running sessions of one runner in id order, stored in the heap in reverse (so a scan reads the highest first). */
async function running(type: string, n = 2): Promise<ClaimedSession[]> {
  await insertSessions(
    db,
    Array.from({ length: n }, () => ({ type })),
  );
  const got = await exchange(db, {
    runnerId: type,
    types: [type],
    slots: n,
    maxConcurrency: 500,
    leaseMs: 30_000,
  });
  const sorted = got.claimed().sort((x, y) => (x.id < y.id ? -1 : 1));
  // New row versions, written highest id first, land in the heap in reverse id order.
  for (const c of [...sorted].reverse())
    await db.query('UPDATE sessions SET updated_at = now() WHERE id = $1', [c.id]);
  return sorted;
}

/** Runs `write` while another transaction holds `b`; answers whether `a` was locked while it waited. */
async function holdsLowerWhileWaiting(a: string, b: string, write: () => Promise<unknown>): Promise<boolean> {
  const holder = await db.connect();
  const probe = await db.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [b]);
    const writing = write();
    await waitFor(
      async () => {
        const { rows } = await probe.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> pg_backend_pid()`,
        );
        return rows[0]!.n > 0;
      },
      { timeoutMs: 5000, what: 'the writer to wait for the held session' },
    );
    let lowerLocked = false;
    try {
      await probe.query('BEGIN');
      await probe.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE NOWAIT', [a]);
    } catch (err) {
      if ((err as { code?: string }).code !== '55P03') throw err;
      lowerLocked = true;
    } finally {
      await probe.query('ROLLBACK');
    }
    await holder.query('ROLLBACK');
    await writing;
    return lowerLocked;
  } finally {
    holder.release();
    probe.release();
  }
}

describe('writers of running sessions', () => {
  it.each([2, 300])('a batch of %i completions locks in id order', async (n) => {
    const all = await running(`lock-complete-${n}`, n);
    const locked = await holdsLowerWhileWaiting(all[0]!.id, all[n - 1]!.id, () =>
      completeSessions(
        db,
        [...all].reverse().map((c) => ({ id: c.id, leaseToken: c.leaseToken, status: 'succeeded' as const })),
      ),
    );
    expect(locked).toBe(true);
  });

  it.each([2, 300])('a heartbeat naming %i sessions locks in id order', async (n) => {
    const all = await running(`lock-beat-${n}`, n);
    const locked = await holdsLowerWhileWaiting(all[0]!.id, all[n - 1]!.id, () =>
      recordHeartbeats(
        db,
        [
          {
            runnerId: `lock-beat-${n}`,
            activeSessions: n,
            maxConcurrency: 500,
            sessions: [...all].reverse().map((c) => ({ id: c.id, leaseToken: c.leaseToken })),
          },
        ],
        30_000,
      ),
    );
    expect(locked).toBe(true);
  });

  it('a hand-back locks in id order', async () => {
    const [a, b] = (await running('lock-handback')) as [ClaimedSession, ClaimedSession];
    const locked = await holdsLowerWhileWaiting(a.id, b.id, () =>
      requeueSessions(db, 'lock-handback', [
        { id: b.id, leaseToken: b.leaseToken },
        { id: a.id, leaseToken: a.leaseToken },
      ]),
    );
    expect(locked).toBe(true);
  });

  it('a heartbeat racing a batch of completions of the same runner: no deadlock, every write lands', async () => {
    const type = 'lock-race';
    let deadlocks = 0;
    for (let round = 0; round < 20; round++) {
      await insertSessions(
        db,
        Array.from({ length: 20 }, () => ({ type })),
      );
      const got = (
        await exchange(db, {
          runnerId: RUNNER,
          types: [type],
          slots: 20,
          maxConcurrency: 100,
          leaseMs: 30_000,
        })
      ).claimed();
      // Scramble the heap order against the id order.
      await db.query('UPDATE sessions SET updated_at = now() WHERE id = ANY($1::uuid[])', [
        got.filter((_, i) => i % 2 === 0).map((c) => c.id),
      ]);
      const refs = got.map((c) => ({ id: c.id, leaseToken: c.leaseToken }));
      const results = await Promise.allSettled([
        recordHeartbeats(
          db,
          [{ runnerId: RUNNER, activeSessions: 20, maxConcurrency: 100, sessions: [...refs].reverse() }],
          30_000,
        ),
        completeSessions(
          db,
          got.map((c) => ({ id: c.id, leaseToken: c.leaseToken, status: 'succeeded' as const })),
        ),
      ]);
      for (const r of results)
        if (r.status === 'rejected') {
          if ((r.reason as { code?: string }).code === '40P01') deadlocks++;
          else throw r.reason;
        }
    }
    expect(deadlocks).toBe(0);
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sessions WHERE type = $1 AND status <> 'succeeded'`,
      [type],
    );
    expect(rows[0]!.n).toBe(0);
  });

  it('the reaper takes only what it can lock, and never waits', async () => {
    const [a, b] = (await running('lock-reap')) as [ClaimedSession, ClaimedSession];
    await db.query('UPDATE sessions SET confirmed_at = now() WHERE id = ANY($1::uuid[])', [[a.id, b.id]]);
    await db.query(
      `UPDATE sessions SET lease_expires_at = now() - interval '1 second' WHERE id = ANY($1::uuid[])`,
      [[a.id, b.id]],
    );
    const holder = await db.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [b.id]);
      const out = await reapSessions(db, 1000);
      expect(out).not.toBeNull();
      await holder.query('ROLLBACK');
    } finally {
      holder.release();
    }
    const { rows } = await db.query<{ id: string; status: string }>(
      'SELECT id, status FROM sessions WHERE id = ANY($1::uuid[]) ORDER BY id',
      [[a.id, b.id]],
    );
    expect(rows.map((r) => r.status)).toEqual(['error', 'running']);
  });
});
