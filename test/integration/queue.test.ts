import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, SfwClient } from '@session-framework/sdk';
import { ClaimReply, type ClaimedSession } from '../../src/protocol/schemas.js';
import { Ajv } from 'ajv';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';
import { insertSessions } from '../../src/store/sessions.js';

let api: TestApi;

beforeAll(async () => {
  api = await startTestApi('queue');
});
afterAll(async () => {
  await api.stop();
});

async function runningCountsByRunner(): Promise<Map<string, number>> {
  const { rows } = await api.db.query<{ claimed_by: string; n: number }>(
    `SELECT claimed_by, count(*)::int AS n FROM sessions WHERE status = 'running' GROUP BY claimed_by`,
  );
  return new Map(rows.map((r) => [r.claimed_by, r.n]));
}

describe('claiming', () => {
  it(
    'claims 5,000 sessions exactly once across 50 concurrent claimers, priority then FIFO, within max concurrency',
    { timeout: 240_000 },
    async () => {
      const N = 5000;
      const sessions = Array.from({ length: N }, (_, i) => ({ type: 'race', priority: i % 5, input: { i } }));
      const { items } = await api.client.createSessions(sessions);
      expect(items).toHaveLength(N);

      const MAX = 4;
      const claimedBy = new Map<string, string>();
      const duplicates: string[] = [];
      let overLimit = 0;
      const batches: ClaimedSession[][] = [];
      const clients = Array.from(
        { length: 5 },
        () => new SfwClient({ baseUrl: api.url, retries: 0, connections: 10 }),
      );

      async function claimer(n: number): Promise<void> {
        const runnerId = `claimer-${n}`;
        const client = clients[n % clients.length]!;
        for (;;) {
          const { sessions: got } = await client.claim(runnerId, {
            slots: 3,
            types: ['race'],
            waitMs: 0,
            maxConcurrency: MAX,
          });
          if (got.length === 0) {
            const { rows } = await api.db.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM sessions WHERE status = 'queued'`,
            );
            if (rows[0]!.n === 0) return;
            continue;
          }
          batches.push(got);
          for (const s of got) {
            if (claimedBy.has(s.id)) duplicates.push(s.id);
            claimedBy.set(s.id, runnerId);
          }
          const counts = await runningCountsByRunner();
          if ((counts.get(runnerId) ?? 0) > MAX) overLimit++;
          await Promise.all(
            got.map((s) =>
              client.complete(s.id, {
                leaseToken: s.leaseToken,
                status: 'succeeded',
                result: { by: runnerId },
              }),
            ),
          );
        }
      }
      await Promise.all(Array.from({ length: 50 }, (_, i) => claimer(i)));
      await Promise.all(clients.map((c) => c.close()));

      expect(duplicates).toEqual([]);
      expect(claimedBy.size).toBe(N);
      expect(overLimit).toBe(0);
      // Within each batch: priority descending, then FIFO (created_at, id).
      for (const batch of batches) {
        for (let i = 1; i < batch.length; i++) {
          const a = batch[i - 1]!;
          const b = batch[i]!;
          expect(
            a.priority > b.priority ||
              (a.priority === b.priority && a.createdAt <= b.createdAt && a.id < b.id),
          ).toBe(true);
        }
      }
      const { rows } = await api.db.query<{ status: string; n: number }>(
        `SELECT status, count(*)::int AS n FROM sessions WHERE type = 'race' GROUP BY status`,
      );
      expect(rows).toEqual([{ status: 'succeeded', n: N }]);
    },
  );

  it('takes the highest priority first and FIFO within a priority, across claims', async () => {
    const low = await api.client.createSession({ type: 'order', priority: 0 });
    const high1 = await api.client.createSession({ type: 'order', priority: 10 });
    const high2 = await api.client.createSession({ type: 'order', priority: 10 });
    const order: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { sessions } = await api.runnerClient.claim('order-runner', {
        slots: 1,
        types: ['order'],
        maxConcurrency: 5,
      });
      order.push(sessions[0]!.id);
    }
    expect(order).toEqual([high1.id, high2.id, low.id]);
  });

  it('never lets a runner hold more running sessions than its max concurrency, even when it asks for more', async () => {
    await api.client.createSessions(Array.from({ length: 10 }, () => ({ type: 'cap' })));
    const first = await api.runnerClient.claim('cap-runner', {
      slots: 10,
      types: ['cap'],
      maxConcurrency: 2,
    });
    expect(first.sessions).toHaveLength(2);
    const second = await api.runnerClient.claim('cap-runner', {
      slots: 10,
      types: ['cap'],
      maxConcurrency: 2,
    });
    expect(second.sessions).toHaveLength(0);
    const s = first.sessions[0]!;
    await api.runnerClient.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded' });
    const third = await api.runnerClient.claim('cap-runner', {
      slots: 10,
      types: ['cap'],
      maxConcurrency: 2,
    });
    expect(third.sessions).toHaveLength(1);
  });

  it('claims only the types the runner serves and only sessions whose run_at has come', async () => {
    const later = new Date(Date.now() + 60_000).toISOString();
    await api.client.createSession({ type: 'future', runAt: later });
    await api.client.createSession({ type: 'other-type' });
    const { sessions } = await api.runnerClient.claim('picky', {
      slots: 5,
      types: ['future'],
      maxConcurrency: 5,
    });
    expect(sessions).toHaveLength(0);
  });

  it('long-poll claim wakes on enqueue (NOTIFY), not on the fallback poll', async () => {
    // The fallback poll is pushed past the claim's wait: only the notification can answer it in time.
    const own = await startTestApi('queue_notify', { deps: { fallbackPollMs: 60_000 } });
    try {
      const pending = own.runnerClient.claim('waiter', {
        slots: 1,
        types: ['wake'],
        waitMs: 20_000,
        maxConcurrency: 1,
      });
      await waitFor(() => own.app.claims.waiting === 1, { timeoutMs: 5000, what: 'the claim to wait' });
      const created = await own.client.createSession({ type: 'wake' });
      const { sessions } = await pending;
      expect(sessions.map((s) => s.id)).toEqual([created.id]);
    } finally {
      await own.stop();
    }
  });
});

describe('fencing', () => {
  it('refuses complete and heartbeat with an old lease token (409) and changes nothing', async () => {
    const created = await api.client.createSession({ type: 'fence', maxAttempts: 1 });
    const { sessions } = await api.runnerClient.claim('fence-a', {
      slots: 1,
      types: ['fence'],
      maxConcurrency: 1,
    });
    const claimed = sessions[0]!;
    // The lease lapses and the session is re-claimed by another runner with a fresh token.
    await api.db.query(`UPDATE sessions SET status = 'queued', claimed_by = NULL WHERE id = $1`, [
      created.id,
    ]);
    const again = await api.runnerClient.claim('fence-b', { slots: 1, types: ['fence'], maxConcurrency: 1 });
    const fresh = again.sessions[0]!;
    expect(fresh.leaseToken).not.toBe(claimed.leaseToken);

    const before = (await api.db.query('SELECT * FROM sessions WHERE id = $1', [created.id]))
      .rows[0] as Record<string, unknown>;
    const err = await api.runnerClient
      .complete(created.id, { leaseToken: claimed.leaseToken, status: 'succeeded', result: { stale: true } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).httpStatus).toBe(409);
    const hb = await api.runnerClient.heartbeat('fence-a', {
      activeSessions: 1,
      maxConcurrency: 1,
      sessions: [{ id: created.id, leaseToken: claimed.leaseToken }],
    });
    expect(hb.lost).toEqual([created.id]);
    const artifact = await api.runnerClient
      .uploadArtifact(created.id, 'x.txt', claimed.leaseToken, Buffer.from('late'))
      .catch((e: unknown) => e);
    expect((artifact as ApiError).httpStatus).toBe(409);
    const after = (await api.db.query('SELECT * FROM sessions WHERE id = $1', [created.id]))
      .rows[0] as Record<string, unknown>;
    expect(after).toEqual(before);

    // The current holder completes normally; a repeat of that completion is answered, not refused.
    const done = await api.runnerClient.complete(created.id, {
      leaseToken: fresh.leaseToken,
      status: 'succeeded',
      result: { ok: 1 },
    });
    expect(done.status).toBe('succeeded');
    const repeat = await api.runnerClient.complete(created.id, {
      leaseToken: fresh.leaseToken,
      status: 'succeeded',
      result: { ok: 1 },
    });
    expect(repeat.status).toBe('succeeded');
  });
});

describe('batch completion', () => {
  it('completes several sessions in one request, each fenced by its own lease; a repeat is answered the same', async () => {
    const created = await api.client.createSessions(
      Array.from({ length: 3 }, () => ({ type: 'batch-done' })),
    );
    const { sessions } = await api.runnerClient.claim('batch-runner', {
      slots: 3,
      types: ['batch-done'],
      maxConcurrency: 3,
    });
    expect(sessions).toHaveLength(3);
    const [a, b, c] = sessions as [ClaimedSession, ClaimedSession, ClaimedSession];
    const stale = '00000000-0000-4000-8000-000000000000';
    const unknown = '01a20000-0000-7000-8000-000000000000';
    const items = [
      { id: a.id, leaseToken: a.leaseToken, status: 'succeeded' as const, result: { n: 1 } },
      { id: b.id, leaseToken: stale, status: 'succeeded' as const },
      { id: c.id, leaseToken: c.leaseToken, status: 'failed' as const, errorMessage: 'boom' },
      { id: unknown, leaseToken: stale, status: 'succeeded' as const },
    ];
    const reply = await api.runnerClient.completeMany('batch-runner', items);
    expect(reply.items).toEqual([
      { id: a.id, outcome: 'accepted', status: 'succeeded' },
      { id: b.id, outcome: 'lease-lost' },
      { id: c.id, outcome: 'accepted', status: 'failed' },
      { id: unknown, outcome: 'not-found' },
    ]);
    expect((await api.client.getSession(a.id)).result).toEqual({ n: 1 });
    expect((await api.client.getSession(b.id)).status).toBe('running');
    expect((await api.client.getSession(c.id)).errorMessage).toBe('boom');
    const again = await api.runnerClient.completeMany('batch-runner', items);
    expect(again.items.map((i) => i.outcome)).toEqual(['accepted', 'lease-lost', 'accepted', 'not-found']);
    const h = (await api.client.runners()).find((r) => r.runnerId === 'batch-runner')!;
    expect(h.totalSessionsExecuted).toBe(2);
    expect(h.totalFailures).toBe(1);
    expect(created.items).toHaveLength(3);
  });

  it('refuses a malformed batch with the path of the bad field and changes nothing', async () => {
    const s = await api.client.createSession({ type: 'batch-bad' });
    const { sessions } = await api.runnerClient.claim('batch-bad-runner', {
      slots: 1,
      types: ['batch-bad'],
      maxConcurrency: 1,
    });
    const err = await api.runnerClient
      .completeMany('batch-bad-runner', [
        { id: s.id, leaseToken: sessions[0]!.leaseToken, status: 'succeeded' },
        { id: s.id, leaseToken: sessions[0]!.leaseToken, status: 'done' as 'succeeded' },
      ])
      .catch((e: unknown) => e);
    expect((err as ApiError).httpStatus).toBe(400);
    expect((err as ApiError).path).toBe('body.items.1.status');
    expect((await api.client.getSession(s.id)).status).toBe('running');
  });
});

describe('claim carrying completions', () => {
  it('stores the completions, then claims into the slots they freed, in one request', async () => {
    await api.client.createSessions(Array.from({ length: 5 }, (_, i) => ({ type: 'carry', input: { i } })));
    const first = await api.runnerClient.claim('carry-runner', {
      slots: 2,
      types: ['carry'],
      maxConcurrency: 2,
    });
    expect(first.sessions).toHaveLength(2);
    expect(first.completed).toBeUndefined();
    const [a, b] = first.sessions as [ClaimedSession, ClaimedSession];
    // Both slots are full: without the completions this claim would get nothing.
    const t0 = Date.now();
    const second = await api.runnerClient.claim('carry-runner', {
      slots: 2,
      types: ['carry'],
      maxConcurrency: 2,
      waitMs: 10_000,
      complete: [
        { id: a.id, leaseToken: a.leaseToken, status: 'succeeded', result: { ok: 1 } },
        { id: b.id, leaseToken: b.leaseToken, status: 'failed', errorMessage: 'no luck' },
      ],
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(second.completed).toEqual([
      { id: a.id, outcome: 'accepted', status: 'succeeded' },
      { id: b.id, outcome: 'accepted', status: 'failed' },
    ]);
    expect(second.sessions).toHaveLength(2);
    expect(second.sessions.map((s) => (s.input as { i: number }).i)).toEqual([2, 3]);
    // The answer is built by the database and sent through unserialized: it must still be a ClaimReply.
    const check = new Ajv({ strict: false }).compile(ClaimReply);
    expect(check(second), JSON.stringify(check.errors)).toBe(true);
    for (const c of second.sessions) {
      expect(c.leaseExpiresAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(c.createdAt).toBe(new Date(c.createdAt).toISOString());
      expect(Date.parse(c.leaseExpiresAt)).toBeGreaterThan(Date.now());
      expect(Date.parse(c.createdAt)).toBeLessThanOrEqual(Date.now());
      expect(c).toMatchObject({ type: 'carry', attempt: 1, maxAttempts: 1, priority: 0, timeoutMs: 60_000 });
      expect(c.artifactOptions).toEqual({ screenshot: 'on-failure', trace: 'off' });
    }
    const va = await api.client.getSession(a.id);
    expect(va).toMatchObject({ status: 'succeeded', result: { ok: 1 } });
    expect(va.attempts).toMatchObject([{ attempt: 1, runnerId: 'carry-runner', status: 'succeeded' }]);
    expect((await api.client.getSession(b.id)).errorMessage).toBe('no luck');
    const counts = await runningCountsByRunner();
    expect(counts.get('carry-runner')).toBe(2);
    // Totals counted once per completion, with the claim's own runner_health write.
    const h = (await api.client.runners()).find((r) => r.runnerId === 'carry-runner')!;
    expect(h.totalSessionsExecuted).toBe(2);
    expect(h.totalFailures).toBe(1);
    // A repeat (the answer was lost) is answered the same and claims nothing twice.
    const repeat = await api.runnerClient.claim('carry-runner', {
      slots: 0,
      types: ['carry'],
      complete: [
        { id: a.id, leaseToken: a.leaseToken, status: 'succeeded', result: { ok: 1 } },
        { id: b.id, leaseToken: b.leaseToken, status: 'failed', errorMessage: 'no luck' },
      ],
    });
    expect(repeat.completed?.map((c) => c.outcome)).toEqual(['accepted', 'accepted']);
    const again = (await api.client.runners()).find((r) => r.runnerId === 'carry-runner')!;
    expect(again.totalSessionsExecuted).toBe(2);
  });

  it('answers at once when it carried completions and nothing is queued; fenced like any completion', async () => {
    const s = await api.client.createSession({ type: 'carry-empty', maxAttempts: 2 });
    const { sessions } = await api.runnerClient.claim('carry-empty-runner', {
      slots: 1,
      types: ['carry-empty'],
      maxConcurrency: 1,
    });
    const c = sessions[0]!;
    const waiting = api.client.waitSession(s.id, 10_000);
    const stale = '00000000-0000-4000-8000-000000000000';
    const unknown = '01a20000-0000-7000-8000-000000000001';
    const t0 = Date.now();
    const reply = await api.runnerClient.claim('carry-empty-runner', {
      slots: 1,
      types: ['carry-empty-none'],
      waitMs: 20_000,
      complete: [
        { id: unknown, leaseToken: stale, status: 'succeeded' },
        { id: s.id, leaseToken: stale, status: 'succeeded' },
      ],
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(reply.sessions).toEqual([]);
    expect(reply.completed).toEqual([
      { id: unknown, outcome: 'not-found' },
      { id: s.id, outcome: 'lease-lost' },
    ]);
    expect((await api.client.getSession(s.id)).status).toBe('running');
    // An error with attempts left goes back to the queue (retry with backoff), and wakes /wait only when final.
    const retried = await api.runnerClient.claim('carry-empty-runner', {
      slots: 0,
      types: ['carry-empty'],
      complete: [{ id: s.id, leaseToken: c.leaseToken, status: 'error', errorMessage: 'flaky' }],
    });
    expect(retried.completed).toEqual([{ id: s.id, outcome: 'accepted', status: 'queued' }]);
    const v = await api.client.getSession(s.id);
    expect(v.status).toBe('queued');
    expect(new Date(v.runAt).getTime()).toBeGreaterThan(Date.now());
    await api.client.cancelSession(s.id);
    expect((await waiting).status).toBe('cancelled');
  });

  it('wakes a client waiting on a session completed by a carrying claim', async () => {
    const s = await api.client.createSession({ type: 'carry-wait' });
    const { sessions } = await api.runnerClient.claim('carry-wait-runner', {
      slots: 1,
      types: ['carry-wait'],
      maxConcurrency: 1,
    });
    const waiting = api.client.waitSession(s.id, 10_000);
    const t0 = Date.now();
    await api.runnerClient.claim('carry-wait-runner', {
      slots: 1,
      types: ['carry-wait'],
      complete: [{ id: s.id, leaseToken: sessions[0]!.leaseToken, status: 'succeeded', result: 7 }],
    });
    const done = await waiting;
    expect(done).toMatchObject({ status: 'succeeded', result: 7 });
    expect(Date.now() - t0).toBeLessThan(900);
  });

  it('keeps the statistics of its claims and completions as the trigger keeps every other change', async () => {
    const type = 'carry-stats';
    await api.client.createSessions(
      Array.from({ length: 9 }, (_, i) => ({ type, maxAttempts: i % 3 === 0 ? 2 : 1 })),
    );
    const outcomes = ['succeeded', 'failed', 'error'] as const;
    let done: { id: string; leaseToken: string; status: (typeof outcomes)[number] }[] = [];
    let k = 0;
    for (let round = 0; round < 6; round++) {
      const reply = await api.runnerClient.claim('carry-stats-runner', {
        slots: 3,
        types: [type],
        maxConcurrency: 3,
        ...(done.length > 0 ? { complete: done } : {}),
      });
      done = reply.sessions.map((s) => ({ id: s.id, leaseToken: s.leaseToken, status: outcomes[k++ % 3]! }));
    }
    // One more session finished through the single-completion endpoint (the trigger's path).
    const extra = await api.client.createSession({ type });
    const { sessions } = await api.runnerClient.claim('carry-stats-other', { slots: 1, types: [type] });
    expect(sessions.map((s) => s.id)).toEqual([extra.id]);
    await api.runnerClient.complete(extra.id, { leaseToken: sessions[0]!.leaseToken, status: 'succeeded' });
    // The counters equal a recount over the sessions' own history.
    const { rows: kept } = await api.db.query<{ kind: string; status: string; n: number }>(
      `SELECT kind, status, sum(count)::int AS n FROM session_stats WHERE type = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
      [type],
    );
    const { rows: recount } = await api.db.query<{ kind: string; status: string; n: number }>(
      `SELECT kind, status, count(*)::int AS n FROM (
         SELECT 'claim_wait' AS kind, 'running' AS status FROM sessions s, jsonb_array_elements(s.attempts) a
         WHERE s.type = $1
         UNION ALL
         SELECT 'claim_wait', 'running' FROM sessions WHERE type = $1 AND status = 'running'
         UNION ALL
         SELECT 'duration', status FROM sessions WHERE type = $1 AND finished_at IS NOT NULL
         UNION ALL
         SELECT 'finished', status FROM sessions WHERE type = $1 AND finished_at IS NOT NULL
       ) e GROUP BY 1, 2 ORDER BY 1, 2`,
      [type],
    );
    expect(kept).toEqual(recount);
    const { rows: minute } = await api.db.query<{ claimed: number; finished: number; failed: number }>(
      `SELECT sum(claimed)::int AS claimed, sum(finished)::int AS finished, sum(failed)::int AS failed
       FROM session_minute_stats`,
    );
    expect(minute[0]!.finished).toBeGreaterThanOrEqual(
      kept.filter((r) => r.kind === 'finished').reduce((a, r) => a + r.n, 0),
    );
  });

  it('wakes clients waiting on any session of a batch completed together (one notification names them all)', async () => {
    await api.client.createSessions(Array.from({ length: 3 }, () => ({ type: 'carry-wait-batch' })));
    const { sessions } = await api.runnerClient.claim('carry-wait-batch-runner', {
      slots: 3,
      types: ['carry-wait-batch'],
      maxConcurrency: 3,
    });
    expect(sessions).toHaveLength(3);
    const waiting = sessions.map((s) => api.client.waitSession(s.id, 10_000));
    const t0 = Date.now();
    await api.runnerClient.claim('carry-wait-batch-runner', {
      slots: 0,
      types: ['carry-wait-batch'],
      complete: sessions.map((s) => ({ id: s.id, leaseToken: s.leaseToken, status: 'succeeded' as const })),
    });
    const done = await Promise.all(waiting);
    expect(done.map((d) => d.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    // Woken by the notification, not by the waiters' 1 s poll.
    expect(Date.now() - t0).toBeLessThan(900);
  });

  it('refuses a claim with a malformed completion (400 with the field path) and changes nothing', async () => {
    const q = await api.client.createSession({ type: 'carry-bad' });
    const s = await api.client.createSession({ type: 'carry-bad-run' });
    const { sessions } = await api.runnerClient.claim('carry-bad-runner', {
      slots: 1,
      types: ['carry-bad-run'],
      maxConcurrency: 2,
    });
    const err = await api.runnerClient
      .claim('carry-bad-runner', {
        slots: 1,
        types: ['carry-bad'],
        complete: [
          { id: s.id, leaseToken: sessions[0]!.leaseToken, status: 'succeeded' },
          { id: s.id, leaseToken: 'not-a-token', status: 'succeeded' },
        ],
      })
      .catch((e: unknown) => e);
    expect((err as ApiError).httpStatus).toBe(400);
    expect((err as ApiError).path).toBe('body.complete.1.leaseToken');
    expect((await api.client.getSession(s.id)).status).toBe('running');
    expect((await api.client.getSession(q.id)).status).toBe('queued');
  });
});

describe('enqueue', () => {
  it('makes one session from 20 concurrent duplicate enqueues with the same Idempotency-Key', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        api.client.createSession({ type: 'idem', input: { a: 1 } }, { idempotencyKey: 'key-123' }),
      ),
    );
    const ids = new Set(results.map((r) => r.id));
    expect(ids.size).toBe(1);
    const { rows } = await api.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sessions WHERE idempotency_key = 'key-123'`,
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('answers a repeated Idempotency-Key with its session only for the same request, else 409', async () => {
    const post = async (path: string, body: unknown, key?: string) => {
      const res = await fetch(`${api.url}${path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(key === undefined ? {} : { 'idempotency-key': key }),
        },
        body: JSON.stringify(body),
      });
      type Answer = {
        id?: string;
        items?: { id: string }[];
        error?: { code: string; path?: string; message: string };
      };
      return { status: res.status, body: (await res.json()) as Answer };
    };
    const first = await post('/v1/sessions', { type: 'idem-body', input: { a: 1, b: [1, 2] } }, 'key-body');
    expect(first.status).toBe(201);
    const id = first.body.id!;
    // The same request again, with its keys in another order and its defaults spelled out: the same session.
    for (const same of [
      { type: 'idem-body', input: { a: 1, b: [1, 2] } },
      { input: { b: [1, 2], a: 1 }, type: 'idem-body', priority: 0, maxAttempts: 1, retryOn: ['error'] },
    ]) {
      const again = await post('/v1/sessions', same, 'key-body');
      expect(again.status, JSON.stringify(same)).toBe(200);
      expect(again.body.id).toBe(id);
    }
    const [stored] = await insertSessions(api.db, [
      { type: 'idem-body', input: { a: 1, b: [1, 2] }, idempotencyKey: 'key-body' },
    ]);
    expect(stored).toMatchObject({ created: false, row: { id } });

    // Another request under the key: refused, naming the key, its session and where the key came from.
    const before = await api.db.query('SELECT * FROM sessions WHERE id = $1', [id]);
    for (const [other, where] of [
      [{ type: 'idem-body', input: { a: 2, b: [1, 2] } }, 'headers.idempotency-key'],
      [{ type: 'idem-body', input: { a: 1, b: [1, 2] }, priority: 5 }, 'headers.idempotency-key'],
      [
        { type: 'idem-body', input: { a: 1, b: [1, 2] }, artifacts: { trace: 'always' } },
        'headers.idempotency-key',
      ],
      [
        { type: 'idem-body', input: { a: 1, b: [1, 2] }, idempotencyKey: 'key-body', timeoutMs: 5000 },
        'body.idempotencyKey',
      ],
    ] as const) {
      const refused = await post('/v1/sessions', other, where.startsWith('headers') ? 'key-body' : undefined);
      expect(refused.status, JSON.stringify(other)).toBe(409);
      expect(refused.body.error).toMatchObject({ code: 'CONFLICT', path: where });
      expect(refused.body.error?.message).toContain('"key-body"');
      expect(refused.body.error?.message).toContain(id);
      expect(refused.body.error?.message).toMatch(/different request/);
    }
    // Batches: a taken key refuses the whole batch, nothing of it enqueued; the same request is answered.
    const batch = await post('/v1/sessions/batch', {
      sessions: [
        { type: 'idem-batch', input: { n: 1 } },
        { type: 'idem-body', input: { a: 3 }, idempotencyKey: 'key-body' },
      ],
    });
    expect(batch.status).toBe(409);
    expect(batch.body.error).toMatchObject({ code: 'CONFLICT', path: 'body.sessions.1.idempotencyKey' });
    const twice = await post('/v1/sessions/batch', {
      sessions: [
        { type: 'idem-batch', input: { n: 1 }, idempotencyKey: 'key-twice' },
        { type: 'idem-batch', input: { n: 2 }, idempotencyKey: 'key-twice' },
      ],
    });
    expect(twice.status).toBe(409);
    expect(twice.body.error?.path).toBe('body.sessions.1.idempotencyKey');
    const { rows: none } = await api.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sessions WHERE type = 'idem-batch'`,
    );
    expect(none[0]!.n).toBe(0);
    expect((await api.db.query('SELECT * FROM sessions WHERE id = $1', [id])).rows).toEqual(before.rows);
    const answered = await post('/v1/sessions/batch', {
      sessions: [
        { type: 'idem-batch', input: { n: 1 } },
        { type: 'idem-body', input: { a: 1, b: [1, 2] }, idempotencyKey: 'key-body' },
      ],
    });
    expect(answered.status).toBe(201);
    expect(answered.body.items?.[1]?.id).toBe(id);
    const { rows: keyed } = await api.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sessions WHERE idempotency_key = 'key-body'`,
    );
    expect(keyed[0]!.n).toBe(1);
  });

  it('enqueues a batch of 10,000 sessions in one request and one transaction', async () => {
    const { items } = await api.client.createSessions(
      Array.from({ length: 10_000 }, (_, i) => ({ type: 'bulk', input: { i } })),
    );
    expect(items).toHaveLength(10_000);
    const { rows } = await api.db.query<{ n: number; tx: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT xmin::text)::int AS tx FROM sessions WHERE type = 'bulk'`,
    );
    expect(rows[0]).toEqual({ n: 10_000, tx: 1 });
  });

  it('pages through sessions with a cursor, newest first, without gaps or repeats', async () => {
    await api.client.createSessions(Array.from({ length: 25 }, (_, i) => ({ type: 'page', input: { i } })));
    const seen: number[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await api.client.listSessions({ type: 'page', limit: 10, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((s) => (s.input as { i: number }).i));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => 24 - i));
  });

  it('waits for a session to end through the wait endpoint', async () => {
    const s = await api.client.createSession({ type: 'waitme' });
    const waiting = api.client.waitSession(s.id, 10_000);
    const { sessions } = await api.runnerClient.claim('w', {
      slots: 1,
      types: ['waitme'],
      maxConcurrency: 1,
    });
    await api.runnerClient.complete(s.id, {
      leaseToken: sessions[0]!.leaseToken,
      status: 'failed',
      errorMessage: 'nope',
    });
    const done = await waiting;
    expect(done.status).toBe('failed');
    expect(done.errorMessage).toBe('nope');
    expect(done.attempts).toHaveLength(1);
  });
});
