import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClaimReply } from '../../src/protocol/schemas.js';
import { SfwClient } from '@session-framework/sdk';
import { freshDb } from '../helpers/db.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Waiting claims are multiplexed in the API: hundreds of idle runners long-polling cost the database a
 * constant few calls a second (not one per waiter per poll), one enqueued session wakes exactly one of
 * them at once, and two API replicas sharing the queue never hand a session out twice.
 */

const WAITERS = 300;
let a: TestApi;
let b: TestApi;
let client: SfwClient;

beforeAll(async () => {
  const shared = await freshDb('claim-hub');
  a = await startTestApi('claim-hub-a', { db: shared });
  b = await startTestApi('claim-hub-b', { db: shared });
  client = new SfwClient({ baseUrl: a.url, retries: 0, connections: WAITERS + 20 });
});

afterAll(async () => {
  await client?.close();
  await a?.stop();
  await b?.stop();
  await a?.db.end();
});

/** Database calls made through the API's pool (each query checks a client out). */
function countQueries(api: TestApi): { count: () => number; stop: () => void } {
  let n = 0;
  const on = () => n++;
  api.db.on('acquire', on);
  return { count: () => n, stop: () => api.db.off('acquire', on) };
}

function startWaiters(c: SfwClient, prefix: string, n: number, type: string) {
  const controller = new AbortController();
  const replies = Array.from({ length: n }, (_, i) =>
    c
      .claim(
        `${prefix}-${i}`,
        { slots: 1, types: [type], waitMs: 30_000, maxConcurrency: 1 },
        controller.signal,
      )
      .then((r) => ({ runner: `${prefix}-${i}`, reply: r, at: Date.now() }))
      .catch(() => ({ runner: `${prefix}-${i}`, reply: null, at: Date.now() })),
  );
  return { replies, abort: () => controller.abort() };
}

describe('heartbeats', () => {
  it('of hundreds of runners at once are written in a few statements, each answered for its own runner', async () => {
    const type = 'hub-beat';
    const created = await client.createSession({ type });
    const { sessions } = await client.claim('beat-0', { slots: 1, types: [type], maxConcurrency: 1 });
    expect(sessions.map((s) => s.id)).toEqual([created.id]);
    await client.cancelSession(created.id);
    // First heartbeats of runners this replica has not seen: each is also asked whether it registered its
    // types, looked up in batches. Bounded, though more than the steady state's few statements.
    const first = countQueries(a);
    await Promise.all(
      Array.from({ length: WAITERS }, (_, i) =>
        client.heartbeat(`beat-${i}`, {
          activeSessions: i === 0 ? 1 : 0,
          maxConcurrency: 1,
          sessions: i === 0 ? [{ id: created.id, leaseToken: sessions[0]!.leaseToken }] : [],
        }),
      ),
    );
    first.stop();
    expect(first.count()).toBeLessThanOrEqual(60);
    // The steady state: heartbeats of runners already known.
    const q = countQueries(a);
    const replies = await Promise.all(
      Array.from({ length: WAITERS }, (_, i) =>
        client.heartbeat(`beat-${i}`, {
          activeSessions: i === 0 ? 1 : 0,
          maxConcurrency: 1,
          sessions: i === 0 ? [{ id: created.id, leaseToken: sessions[0]!.leaseToken }] : [],
        }),
      ),
    );
    q.stop();
    expect(q.count()).toBeLessThanOrEqual(15);
    expect(replies[0]!.cancel).toEqual([created.id]);
    expect(replies.slice(1).every((r) => r.cancel.length === 0 && r.lost.length === 0)).toBe(true);
    const { rows } = await a.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM runner_health WHERE runner_id LIKE 'beat-%'`,
    );
    expect(rows[0]!.n).toBe(WAITERS);
  });
});

describe('exchanges of concurrent runners', () => {
  it('go to the database together, each runner held to its types, slots and max concurrency', async () => {
    const runners = Array.from({ length: 20 }, (_, i) => ({
      id: `mix-${i}`,
      type: i % 2 ? 'mix-a' : 'mix-b',
    }));
    await client.createSessions([
      ...Array.from({ length: 200 }, () => ({ type: 'mix-a' })),
      ...Array.from({ length: 200 }, () => ({ type: 'mix-b' })),
    ]);
    const seen = new Map<string, string>(); // session → runner
    const q = countQueries(a);
    let requests = 0;
    await Promise.all(
      runners.map(async (r) => {
        let held: { id: string; leaseToken: string }[] = [];
        for (let round = 0; round < 10; round++) {
          requests++;
          const reply = await client.claim(r.id, {
            slots: 2,
            types: [r.type],
            maxConcurrency: 2,
            complete: held.map((h) => ({ id: h.id, leaseToken: h.leaseToken, status: 'succeeded' as const })),
          });
          for (const c of reply.completed ?? []) expect(c.outcome).toBe('accepted');
          expect(reply.sessions.length).toBeLessThanOrEqual(2);
          for (const s of reply.sessions) {
            expect(s.type).toBe(r.type);
            expect(seen.has(s.id)).toBe(false);
            seen.set(s.id, r.id);
          }
          held = reply.sessions.map((s) => ({ id: s.id, leaseToken: s.leaseToken }));
        }
      }),
    );
    q.stop();
    expect(seen.size).toBe(400);
    // Fewer database calls than requests: concurrent exchanges shared calls.
    expect(q.count()).toBeLessThan(requests);
    const { rows } = await a.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM runner_health WHERE runner_id LIKE 'mix-%' AND total_sessions_executed = 18`,
    );
    expect(rows[0]!.n).toBe(20);
  });
});

describe('waiting claims', () => {
  it(`${WAITERS} idle waiters cost a few database calls a second, and one session wakes exactly one of them at once`, async () => {
    const type = 'hub-one';
    const waiters = startWaiters(client, 'idle', WAITERS, type);
    // Every waiting runner is registered and its polls count as liveness (written in batches).
    const live = async () =>
      (
        await a.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM runner_health
           WHERE runner_id LIKE 'idle-%' AND last_heartbeat > now() - interval '10 seconds'`,
        )
      ).rows[0]!.n;
    await waitFor(async () => (await live()) === WAITERS, { timeoutMs: 30_000, what: 'all waiters live' });

    // Idle: nothing queued. The fallback poll (1 s with LISTEN) and the liveness flush are the only calls,
    // however many runners wait.
    const idle = countQueries(a);
    await new Promise((r) => setTimeout(r, 3000));
    idle.stop();
    expect(idle.count()).toBeLessThanOrEqual(12);
    expect(a.app.claims.waiting).toBe(WAITERS);

    // One session: claimed by exactly one waiter, woken by the notification, not the 1 s poll.
    const settled: { runner: string; reply: ClaimReply | null; at: number }[] = [];
    for (const p of waiters.replies) void p.then((r) => settled.push(r));
    const t0 = Date.now();
    const created = await client.createSession({ type });
    await waitFor(async () => settled.length > 0, { timeoutMs: 5000, what: 'a waiter woken' });
    const latency = settled[0]!.at - t0;
    expect(settled).toHaveLength(1);
    expect(settled[0]!.reply!.sessions.map((s) => s.id)).toEqual([created.id]);
    expect(latency).toBeLessThan(500);
    // The longest waiting is served first.
    expect(settled[0]!.runner).toBe('idle-0');

    // A burst for the rest: each session once, each waiter at most one (its max concurrency).
    await client.createSessions(Array.from({ length: WAITERS - 1 }, () => ({ type })));
    await waitFor(async () => settled.length === WAITERS, { timeoutMs: 30_000, what: 'all waiters served' });
    const ids = settled.flatMap((s) => s.reply?.sessions.map((x) => x.id) ?? []);
    expect(ids).toHaveLength(WAITERS);
    expect(new Set(ids).size).toBe(WAITERS);
    waiters.abort();
  }, 120_000);

  it('two API replicas with their own waiters hand out each session exactly once', async () => {
    const type = 'hub-two';
    const clientB = new SfwClient({ baseUrl: b.url, retries: 0, connections: 120 });
    try {
      const onA = startWaiters(client, 'rep-a', 100, type);
      const onB = startWaiters(clientB, 'rep-b', 100, type);
      await waitFor(async () => a.app.claims.waiting >= 100 && b.app.claims.waiting >= 100, {
        timeoutMs: 30_000,
        what: 'waiters on both replicas',
      });
      const created = await client.createSessions(Array.from({ length: 150 }, () => ({ type })));
      const expected = new Set(created.items.map((s) => s.id));
      const got: string[] = [];
      const servedBy = { a: 0, b: 0 };
      const all = [...onA.replies, ...onB.replies];
      for (const p of all)
        void p.then((r) => {
          const n = r.reply?.sessions.length ?? 0;
          got.push(...(r.reply?.sessions.map((s) => s.id) ?? []));
          servedBy[r.runner.startsWith('rep-a') ? 'a' : 'b'] += n;
        });
      await waitFor(async () => got.length === 150, { timeoutMs: 30_000, what: '150 sessions handed out' });
      expect(new Set(got).size).toBe(150);
      expect([...got].every((id) => expected.has(id))).toBe(true);
      expect(servedBy.a + servedBy.b).toBe(150);
      // Nothing else is claimed, and the database agrees with what the runners were told.
      const { rows } = await a.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM sessions WHERE type = $1 AND status = 'running'`,
        [type],
      );
      expect(rows[0]!.n).toBe(150);
      onA.abort();
      onB.abort();
    } finally {
      await clientB.close();
    }
  }, 120_000);
});
