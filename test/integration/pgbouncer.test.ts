import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { createDb, type Db } from '../../src/store/db.js';
import { ensureDatabase } from '../../src/store/embedded.js';
import { loadMigrations, migrate } from '../../src/store/migrate.js';
import { ApiError } from '@session-framework/sdk';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { pgbouncerBinary, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The API through a real PgBouncer in transaction mode (a deploy behind Supabase's pooler or a PgBouncer
 * sidecar) in front of the suite's Postgres, in poll-only mode (DB_POLL_ONLY: no LISTEN connection):
 * migrations from two replicas at once, the queue contract over HTTP, long polls, lease recovery.
 * Checked through the HTTP contract only (status codes and fields).
 */

const POOL_SIZE = 5;
/** Leases short enough to see the reaper recover one within seconds, long enough for a loaded machine. */
const LEASE_MS = 4000;
const BIN = pgbouncerBinary();
const REQUIRED = Boolean(process.env.REQUIRE_PGBOUNCER);

if (!BIN && !REQUIRED) {
  it.skip('through PgBouncer: skipped, no pgbouncer binary (apt-get install pgbouncer; REQUIRE_PGBOUNCER=1 makes this a failure)', () => {});
} else {
  describe('through PgBouncer (transaction mode, poll-only)', () => {
    let bouncer: PgBouncer;
    let database: string;
    let directUrl: string;
    const pools: Db[] = [];
    const apis: TestApi[] = [];
    let a: TestApi;
    let b: TestApi;

    beforeAll(async () => {
      bouncer = await startPgBouncer(inject('pgAdminUrl'), { poolSize: POOL_SIZE });
      database = `t_pgbouncer_${process.pid}_${Date.now().toString(36)}`;
      directUrl = await ensureDatabase(inject('pgAdminUrl'), database);
    });
    afterAll(async () => {
      for (const api of apis) await api.stop();
      await Promise.all(pools.map((p) => p.end()));
      await bouncer?.stop();
    });

    function pool(url: string, max = 20): Db {
      const db = createDb({ connectionString: url, max });
      pools.push(db);
      return db;
    }

    async function direct<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
      const c = new pg.Client({ connectionString: directUrl });
      await c.connect();
      try {
        return (await c.query<T>(sql, params)).rows;
      } finally {
        await c.end();
      }
    }

    it('two API replicas migrating a fresh database at the same moment: both succeed, each migration recorded once', async () => {
      const url = bouncer.urlFor(database);
      const dbA = pool(url);
      const dbB = pool(url);
      const runs = await Promise.all([migrate(dbA), migrate(dbB)]);
      const all = (await loadMigrations()).map((m) => m.name);
      expect(runs.flat().sort()).toEqual([...all].sort());
      expect(runs.filter((r) => r.length > 0)).toHaveLength(1);
      const recorded = await direct<{ version: number; n: number }>(
        'SELECT version, count(*)::int AS n FROM schema_migrations GROUP BY version ORDER BY version',
      );
      expect(recorded.map((r) => r.n)).toEqual(all.map(() => 1));
      expect(recorded).toHaveLength(all.length);
      // No advisory lock outlives the migration on any server connection PgBouncer keeps.
      expect(
        await direct(
          `SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                      WHERE l.locktype = 'advisory' AND d.datname = $1`,
          [database],
        ),
      ).toEqual([]);
      // Again from both: nothing left to do.
      expect(await Promise.all([migrate(dbA), migrate(dbB)])).toEqual([[], []]);

      const opts = { pollOnly: true, staleSessionTimeoutMs: LEASE_MS, reaperIntervalMs: 200 };
      a = await startTestApi('pgbouncer_a', { ...opts, db: { db: dbA, url } });
      apis.push(a);
      b = await startTestApi('pgbouncer_b', { ...opts, db: { db: dbB, url } });
      apis.push(b);
      expect((await fetch(`${a.url}/readyz`)).status).toBe(200);
      expect((await fetch(`${b.url}/readyz`)).status).toBe(200);
    });

    it('enqueue on one replica, claim and complete on the other; /wait returns once completed', async () => {
      const created = await a.client.createSession({ type: 'pgb-flow', input: { n: 1 } });
      expect(created.status).toBe('queued');

      const waiting = a.client.waitSession(created.id, 40_000);
      const { sessions } = await b.runnerClient.claim('pgb-runner', { slots: 1, types: ['pgb-flow'] });
      expect(sessions).toHaveLength(1);
      const claimed = sessions[0]!;
      expect(claimed).toMatchObject({ id: created.id, type: 'pgb-flow', input: { n: 1 }, attempt: 1 });
      expect(claimed.leaseToken).toEqual(expect.any(String));
      expect((await a.client.getSession(created.id)).status).toBe('running');

      // A wrong lease token is refused and changes nothing.
      await expect(
        b.runnerClient.complete(created.id, {
          leaseToken: '00000000-0000-4000-8000-000000000000',
          status: 'succeeded',
        }),
      ).rejects.toMatchObject({ httpStatus: 409 });

      const completedAt = Date.now();
      const done = await b.runnerClient.complete(created.id, {
        leaseToken: claimed.leaseToken,
        status: 'succeeded',
        result: { ok: true },
      });
      expect(done).toMatchObject({ id: created.id, status: 'succeeded', result: { ok: true } });
      const waited = await waiting;
      // Poll-only: the waiter sees the completion at its next database check, not at its timeout.
      expect(Date.now() - completedAt).toBeLessThan(20_000);
      expect(waited).toMatchObject({ id: created.id, status: 'succeeded', result: { ok: true }, attempt: 1 });
      expect(waited.finishedAt).toEqual(expect.any(String));
      // The completion is answered again when repeated (idempotent), also through the other replica.
      expect(
        await a.runnerClient.complete(created.id, {
          leaseToken: claimed.leaseToken,
          status: 'succeeded',
          result: { ok: true },
        }),
      ).toMatchObject({ status: 'succeeded' });
    });

    it('a long-poll claim picks up a session enqueued while it waits', async () => {
      const pending = b.runnerClient.claim('pgb-poller', { slots: 1, types: ['pgb-wake'], waitMs: 30_000 });
      await new Promise((r) => setTimeout(r, 300)); // the claim is waiting when the session arrives
      const t0 = Date.now();
      const created = await a.client.createSession({ type: 'pgb-wake' });
      const { sessions } = await pending;
      expect(sessions.map((s) => s.id)).toEqual([created.id]);
      expect(Date.now() - t0).toBeLessThan(20_000); // at a poll, not at waitMs
      await b.runnerClient.complete(created.id, { leaseToken: sessions[0]!.leaseToken, status: 'succeeded' });
    });

    it('the reaper recovers a session whose lease lapsed; the first runner’s late completion gets 409', async () => {
      const created = await a.client.createSession({ type: 'pgb-lapse', maxAttempts: 2 });
      const first = (await b.runnerClient.claim('pgb-lost', { slots: 1, types: ['pgb-lapse'] })).sessions[0]!;
      expect(first.id).toBe(created.id);
      // One heartbeat confirms the claim (the runner started it), then none: the lease lapses and a
      // replica's reaper requeues it with backoff.
      await b.runnerClient.heartbeat('pgb-lost', {
        activeSessions: 1,
        maxConcurrency: 3,
        sessions: [{ id: first.id, leaseToken: first.leaseToken }],
      });
      const requeued = await waitFor(
        async () => {
          const s = await a.client.getSession(created.id);
          return s.status === 'queued' && s.attempts.length > 0 ? s : null;
        },
        { timeoutMs: 30_000, intervalMs: 100, what: 'the reaper to requeue the lapsed session' },
      );
      expect(requeued.claimedBy).toBeNull();
      expect(requeued.attempts[0]).toMatchObject({ attempt: 1, runnerId: 'pgb-lost', status: 'error' });

      const late = await b.runnerClient
        .complete(created.id, { leaseToken: first.leaseToken, status: 'succeeded' })
        .catch((err: unknown) => err);
      expect(late).toBeInstanceOf(ApiError);
      expect((late as ApiError).httpStatus).toBe(409);

      const second = await waitFor(
        async () =>
          (await a.runnerClient.claim('pgb-rescuer', { slots: 1, types: ['pgb-lapse'] })).sessions[0],
        { timeoutMs: 30_000, intervalMs: 200, what: 'the second claim after the backoff' },
      );
      expect(second).toMatchObject({ id: created.id, attempt: 2 });
      expect(second.leaseToken).not.toBe(first.leaseToken);
      await a.runnerClient.complete(created.id, { leaseToken: second.leaseToken, status: 'succeeded' });
      const final = await b.client.waitSession(created.id, 10_000);
      expect(final).toMatchObject({ status: 'succeeded', claimedBy: 'pgb-rescuer', attempt: 2 });
      expect(final.attempts.map((x) => [x.runnerId, x.status])).toEqual([
        ['pgb-lost', 'error'],
        ['pgb-rescuer', 'succeeded'],
      ]);
    });

    it(`many concurrent requests share at most ${POOL_SIZE} server connections`, async () => {
      const { items } = await a.client.createSessions(
        Array.from({ length: 50 }, () => ({ type: 'pgb-many' })),
      );
      const reads = await Promise.all(items.map((s, i) => (i % 2 ? a : b).client.getSession(s.id)));
      expect(reads.every((s) => s.status === 'queued')).toBe(true);
      const claimed = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 ? a : b).runnerClient.claim(`pgb-many-${i}`, {
            slots: 5,
            types: ['pgb-many'],
            maxConcurrency: 5,
          }),
        ),
      );
      const ids = claimed.flatMap((c) => c.sessions.map((s) => s.id));
      expect(new Set(ids).size).toBe(ids.length); // no session handed out twice
      expect(ids).toHaveLength(50);
      const [{ n }] = (await direct<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1`,
        [database],
      )) as [{ n: number }];
      // PgBouncer's pool for this database and user, not the API's 2 × 20 client connections.
      expect(n).toBeLessThanOrEqual(POOL_SIZE + 1); // + this check's own direct connection
    });
  });
}
