import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNNER_LOST_MESSAGE } from '../../src/core/types.js';
import { Reaper } from '../../src/server/reaper.js';
import { ApiError } from '@session-framework/sdk';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';

// Short leases so recovery is observable in well under a second; the reaper is driven by hand (runOnce)
// except where two replicas run their own loops.
const LEASE_MS = 400;
let api: TestApi;
let reaper: Reaper;

beforeAll(async () => {
  api = await startTestApi('reaper', { staleSessionTimeoutMs: LEASE_MS });
  reaper = new Reaper(api.db, 60_000, 200);
});
afterAll(async () => {
  await api.stop();
});

async function row(id: string) {
  const { rows } = await api.db.query<{
    status: string;
    error_message: string | null;
    claimed_by: string | null;
    attempt: number;
    run_at: Date;
    updated_at: Date;
    finished_at: Date | null;
    result: unknown;
    attempts: { attempt: number; status: string; errorMessage: string | null; runnerId: string | null }[];
    lease_token: string | null;
  }>('SELECT * FROM sessions WHERE id = $1', [id]);
  return rows[0]!;
}

/**
 * The runner's first heartbeat naming its sessions: it confirms it received the claim (a lapsed lease it
 * never confirmed goes back to the queue without spending the attempt).
 */
async function confirm(runnerId: string, sessions: ClaimedSession[], via = api): Promise<void> {
  await via.runnerClient.heartbeat(runnerId, {
    activeSessions: sessions.length,
    maxConcurrency: 1000,
    sessions: sessions.map((c) => ({ id: c.id, leaseToken: c.leaseToken })),
  });
}

/** Claims one session of `type` and confirms it (unless told not to), as a runner that starts it does. */
async function claimOne(runnerId: string, type: string, confirmed = true): Promise<ClaimedSession> {
  const { sessions } = await api.runnerClient.claim(runnerId, {
    slots: 1,
    types: [type],
    maxConcurrency: 50,
  });
  expect(sessions).toHaveLength(1);
  if (confirmed) await confirm(runnerId, sessions);
  return sessions[0]!;
}

/** Waits until the lease of every given session has passed by the database's clock. */
async function leasesLapsed(ids: string[]): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await api.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM sessions WHERE id = ANY($1::uuid[]) AND lease_expires_at >= now()`,
        [ids],
      );
      return rows[0]!.n === 0;
    },
    { timeoutMs: 5000, what: 'leases to lapse' },
  );
}

async function health(runnerId: string) {
  const { rows } = await api.db.query<{ total_sessions_executed: string; total_failures: string }>(
    'SELECT total_sessions_executed, total_failures FROM runner_health WHERE runner_id = $1',
    [runnerId],
  );
  return {
    executed: Number(rows[0]?.total_sessions_executed ?? 0),
    failures: Number(rows[0]?.total_failures ?? 0),
  };
}

describe('a session cancelled while it ran', () => {
  it('ends cancelled when its runner dies, never back in the queue, though attempts remain', async () => {
    const s = await api.client.createSession({ type: 'cancel-lapse', maxAttempts: 3 });
    await claimOne('cancel-lapse-a', 'cancel-lapse');
    await api.client.cancelSession(s.id);
    await leasesLapsed([s.id]);
    await reaper.runOnce();
    const r = await row(s.id);
    expect(r.status).toBe('cancelled');
    expect(r.finished_at).not.toBeNull();
    // Nobody can claim it again.
    const again = await api.runnerClient.claim('cancel-lapse-b', {
      slots: 1,
      types: ['cancel-lapse'],
      maxConcurrency: 1,
    });
    expect(again.sessions).toEqual([]);
  });

  it('ends cancelled when its stopping runner hands it back', async () => {
    const s = await api.client.createSession({ type: 'cancel-back', maxAttempts: 3 });
    const claimed = await claimOne('cancel-back-a', 'cancel-back');
    await api.client.cancelSession(s.id);
    await api.runnerClient.stopRunner('cancel-back-a', {
      requeue: [{ id: claimed.id, leaseToken: claimed.leaseToken }],
    });
    expect((await row(s.id)).status).toBe('cancelled');
    const again = await api.runnerClient.claim('cancel-back-b', {
      slots: 1,
      types: ['cancel-back'],
      maxConcurrency: 1,
    });
    expect(again.sessions).toEqual([]);
  });
});

describe('a claim its runner never confirmed', () => {
  // The answer to a claim can be lost after the commit (the API died, the reply was lost after the
  // kernel took it): the runner never heard of the session, and nobody ran it.
  it('goes back to the queue without spending an attempt, ready at once, and counts no new claim', async () => {
    const s = await api.client.createSession({ type: 'unconfirmed' }); // maxAttempts 1
    const lost = await claimOne('unconfirmed-a', 'unconfirmed', false);
    expect(lost.attempt).toBe(1);
    await leasesLapsed([s.id]);
    expect(await reaper.runOnce()).toMatchObject({ returned: 1, requeued: 0, errored: 0 });
    const r = await row(s.id);
    expect(r.status).toBe('queued');
    expect(r.attempt).toBe(0);
    expect(r.claimed_by).toBeNull();
    expect(r.run_at.getTime()).toBeLessThanOrEqual(Date.now() + 50); // no backoff: it never ran
    expect(r.attempts).toMatchObject([{ attempt: 1, status: 'queued', runnerId: 'unconfirmed-a' }]);
    expect(r.attempts[0]!.errorMessage).toMatch(/never confirmed/);
    // The runner's late word about it is refused; it adds nothing to the runner's totals.
    await expect(
      api.runnerClient.complete(s.id, { leaseToken: lost.leaseToken, status: 'succeeded' }),
    ).rejects.toMatchObject({ httpStatus: 409 });
    expect(await health('unconfirmed-a')).toEqual({ executed: 0, failures: 0 });

    // Another runner gets it with its one attempt, runs it and ends it.
    const next = await claimOne('unconfirmed-b', 'unconfirmed');
    expect(next.attempt).toBe(1);
    await api.runnerClient.complete(s.id, { leaseToken: next.leaseToken, status: 'succeeded' });
    expect((await row(s.id)).status).toBe('succeeded');
    // One claim counted for the session, not two.
    const { rows } = await api.db.query<{ n: number }>(
      `SELECT coalesce(sum(count), 0)::int AS n FROM session_stats WHERE kind = 'claim_wait' AND type = 'unconfirmed'`,
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('is returned a bounded number of times, then spends attempts like any lapsed lease', async () => {
    const s = await api.client.createSession({ type: 'unconfirmed-loop' });
    for (let i = 0; i < 3; i++) {
      await claimOne(`loop-${i}`, 'unconfirmed-loop', false);
      await leasesLapsed([s.id]);
      expect(await reaper.runOnce()).toMatchObject({ returned: 1 });
    }
    await claimOne('loop-3', 'unconfirmed-loop', false);
    await leasesLapsed([s.id]);
    expect(await reaper.runOnce()).toMatchObject({ returned: 0, errored: 1 });
    const r = await row(s.id);
    expect(r.status).toBe('error');
    expect(r.attempts.map((a) => a.status)).toEqual(['queued', 'queued', 'queued', 'error']);
  });

  it('a confirmed claim spends its attempt when its lease lapses', async () => {
    const s = await api.client.createSession({ type: 'confirmed' });
    await claimOne('confirmed-a', 'confirmed');
    await leasesLapsed([s.id]);
    expect(await reaper.runOnce()).toMatchObject({ returned: 0, errored: 1 });
    expect((await row(s.id)).status).toBe('error');
  });
});

describe('lapsed leases', () => {
  it('requeues with backoff while attempts remain, then ends as error "Runner connection lost"', async () => {
    const s = await api.client.createSession({ type: 'lapse', maxAttempts: 2 });
    const first = await claimOne('lapse-a', 'lapse');
    await leasesLapsed([s.id]);
    expect(await reaper.runOnce()).toMatchObject({ requeued: 1, errored: 0 });

    let r = await row(s.id);
    expect(r.status).toBe('queued');
    expect(r.claimed_by).toBeNull();
    expect(r.attempt).toBe(1);
    const delay = r.run_at.getTime() - r.updated_at.getTime();
    expect(delay).toBeGreaterThanOrEqual(450); // 1 s × jitter in [0.5, 1]
    expect(delay).toBeLessThanOrEqual(1050);
    expect(r.attempts).toMatchObject([
      { attempt: 1, status: 'error', errorMessage: RUNNER_LOST_MESSAGE, runnerId: 'lapse-a' },
    ]);
    // Not claimable before its backoff has passed (pushed out so a slow machine cannot reach it first).
    const backoffUntil = r.run_at;
    await api.db.query(`UPDATE sessions SET run_at = now() + interval '1 hour' WHERE id = $1`, [s.id]);
    const early = await api.runnerClient.claim('lapse-b', { slots: 1, types: ['lapse'] });
    expect(early.sessions).toHaveLength(0);
    await api.db.query('UPDATE sessions SET run_at = $2 WHERE id = $1', [s.id, backoffUntil]);

    // The late runner's writes are refused: its lease moved on.
    await expect(
      api.runnerClient.complete(s.id, { leaseToken: first.leaseToken, status: 'succeeded' }),
    ).rejects.toMatchObject({ httpStatus: 409 });
    const hb = await api.runnerClient.heartbeat('lapse-a', {
      activeSessions: 1,
      maxConcurrency: 1,
      sessions: [{ id: s.id, leaseToken: first.leaseToken }],
    });
    expect(hb.lost).toEqual([s.id]);

    await waitFor(async () => (await row(s.id)).run_at.getTime() <= Date.now() - 50, {
      timeoutMs: 3000,
      what: 'backoff to pass',
    });
    const second = await waitFor(
      async () => (await api.runnerClient.claim('lapse-b', { slots: 1, types: ['lapse'] })).sessions[0],
      { timeoutMs: 3000, what: 'the second claim' },
    );
    expect(second.attempt).toBe(2);
    expect(second.leaseToken).not.toBe(first.leaseToken);
    await confirm('lapse-b', [second]);
    await leasesLapsed([s.id]);
    expect(await reaper.runOnce()).toMatchObject({ requeued: 0, errored: 1 });

    r = await row(s.id);
    expect(r.status).toBe('error');
    expect(r.error_message).toBe('Runner connection lost');
    expect(r.finished_at).not.toBeNull();
    expect(r.attempts.map((a) => [a.attempt, a.runnerId, a.errorMessage])).toEqual([
      [1, 'lapse-a', RUNNER_LOST_MESSAGE],
      [2, 'lapse-b', RUNNER_LOST_MESSAGE],
    ]);
    expect(await health('lapse-a')).toEqual({ executed: 1, failures: 1 });
    expect(await health('lapse-b')).toEqual({ executed: 1, failures: 1 });
    // Nothing left to do: a second pass changes nothing.
    expect(await reaper.runOnce()).toMatchObject({ requeued: 0, errored: 0, timedOut: 0 });
    expect((await row(s.id)).attempts).toHaveLength(2);
  });

  it('leaves sessions alone while their runner heartbeats', async () => {
    // A lease long enough that a loaded machine cannot miss it between two heartbeats.
    const own = await startTestApi('reaper_alive', { staleSessionTimeoutMs: 1500 });
    const ownReaper = new Reaper(own.db, 60_000, 10_000);
    try {
      const s = await own.client.createSession({ type: 'alive' });
      const { sessions } = await own.runnerClient.claim('alive-runner', { slots: 1, types: ['alive'] });
      const c = sessions[0]!;
      const until = Date.now() + 3500;
      while (Date.now() < until) {
        await own.runnerClient.heartbeat('alive-runner', {
          activeSessions: 1,
          maxConcurrency: 1,
          sessions: [{ id: s.id, leaseToken: c.leaseToken }],
        });
        expect(await ownReaper.runOnce()).toMatchObject({ requeued: 0, errored: 0, timedOut: 0 });
        await new Promise((r) => setTimeout(r, 250));
      }
      const done = await own.runnerClient.complete(s.id, {
        leaseToken: c.leaseToken,
        status: 'succeeded',
        result: { ok: 1 },
      });
      expect(done.status).toBe('succeeded');
      expect(done.attempts).toHaveLength(1);
    } finally {
      await own.stop();
    }
  });

  it('ends a session running past its timeout plus the grace on a live runner', async () => {
    const s = await api.client.createSession({ type: 'stuck', timeoutMs: 100, maxAttempts: 3 });
    const c = await claimOne('stuck-runner', 'stuck');
    const beat = () =>
      api.runnerClient.heartbeat('stuck-runner', {
        activeSessions: 1,
        maxConcurrency: 1,
        sessions: [{ id: s.id, leaseToken: c.leaseToken }],
      });
    // timeout 100 ms + grace 200 ms; the lease stays fresh all along.
    const out = await waitFor(
      async () => {
        await beat();
        const o = await reaper.runOnce();
        return o && o.timedOut > 0 ? o : null;
      },
      { timeoutMs: 5000, intervalMs: 50, what: 'the stuck session to be ended' },
    );
    expect(out).toMatchObject({ timedOut: 1, requeued: 0 });
    const r = await row(s.id);
    expect(r.status).toBe('error');
    expect(r.error_message).toMatch(/exceeded its timeout of 100 ms/);
    expect(r.attempts).toHaveLength(1);
    await expect(
      api.runnerClient.complete(s.id, { leaseToken: c.leaseToken, status: 'succeeded' }),
    ).rejects.toBeInstanceOf(ApiError);
  });
});

describe('the reaper racing completions', () => {
  it('ends every session in exactly one terminal state; won completions are kept, late ones get 409', async () => {
    const N = 200;
    const { items } = await api.client.createSessions(
      Array.from({ length: N }, (_, i) => ({ type: 'race-reap', input: { i } })),
    );
    const claimed: ClaimedSession[] = [];
    while (claimed.length < N) {
      const { sessions } = await api.runnerClient.claim('race-runner', {
        slots: 100,
        types: ['race-reap'],
        maxConcurrency: 1000,
      });
      expect(sessions.length).toBeGreaterThan(0);
      await confirm('race-runner', sessions);
      claimed.push(...sessions);
    }
    await leasesLapsed(items.map((s) => s.id));

    const outcomes = new Map<string, number>();
    const reapers = Array.from({ length: 3 }, () => new Reaper(api.db, 60_000, 200));
    let reaped = 0;
    const reaping = (async () => {
      for (let i = 0; i < 30; i++) {
        const outs = await Promise.all(reapers.map((r) => r.runOnce()));
        for (const o of outs) if (o) reaped += o.errored + o.requeued + o.timedOut;
      }
    })();
    const completing = Promise.all(
      claimed.map(async (s, i) => {
        if (i % 3 === 0) await new Promise((r) => setTimeout(r, i % 7));
        try {
          await api.runnerClient.complete(s.id, {
            leaseToken: s.leaseToken,
            status: 'succeeded',
            result: { by: 'race-runner', i },
          });
          outcomes.set(s.id, 200);
        } catch (err) {
          outcomes.set(s.id, (err as ApiError).httpStatus);
        }
      }),
    );
    await Promise.all([reaping, completing]);
    await reapers[0]!.runOnce();

    const { rows } = await api.db.query<{
      id: string;
      status: string;
      error_message: string | null;
      result: { i: number } | null;
      attempts: unknown[];
    }>(`SELECT id, status, error_message, result, attempts FROM sessions WHERE type = 'race-reap'`);
    expect(rows).toHaveLength(N);
    let won = 0;
    for (const r of rows) {
      const code = outcomes.get(r.id);
      expect(r.attempts).toHaveLength(1);
      if (code === 200) {
        won++;
        expect(r.status).toBe('succeeded');
        expect(r.result).toMatchObject({ by: 'race-runner' });
      } else {
        expect(code).toBe(409);
        expect(r.status).toBe('error');
        expect(r.error_message).toBe(RUNNER_LOST_MESSAGE);
      }
    }
    expect(won + reaped).toBe(N);
    // runner_health counts every session once, whoever ended it.
    expect(await health('race-runner')).toEqual({ executed: N, failures: N - won });
  });
});

describe('two API replicas', () => {
  it('never process a stale session twice', async () => {
    const replicaA = await startTestApi('reaper_a', {
      db: { db: api.db, url: api.databaseUrl },
      staleSessionTimeoutMs: LEASE_MS,
      reaperIntervalMs: 20,
    });
    const replicaB = await startTestApi('reaper_b', {
      db: { db: api.db, url: api.databaseUrl },
      staleSessionTimeoutMs: LEASE_MS,
      reaperIntervalMs: 20,
    });
    try {
      const N = 120;
      const { items } = await replicaA.client.createSessions(
        Array.from({ length: N }, (_, i) => ({ type: 'replicas', maxAttempts: i % 2 === 0 ? 1 : 3 })),
      );
      let claimed = 0;
      while (claimed < N) {
        const via = claimed % 2 ? replicaA : replicaB;
        const runner = `replica-runner-${claimed % 2}`;
        const { sessions } = await via.runnerClient.claim(runner, {
          slots: 40,
          types: ['replicas'],
          maxConcurrency: 1000,
        });
        await confirm(runner, sessions, via);
        claimed += sessions.length;
      }
      const ids = items.map((s) => s.id);
      await waitFor(
        async () => {
          const { rows } = await api.db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM sessions WHERE id = ANY($1::uuid[]) AND status = 'running'`,
            [ids],
          );
          return rows[0]!.n === 0;
        },
        { timeoutMs: 10_000, what: 'both replicas to recover every session' },
      );
      const { rows } = await api.db.query<{ status: string; max_attempts: number; attempts: unknown[] }>(
        `SELECT status, max_attempts, attempts FROM sessions WHERE id = ANY($1::uuid[])`,
        [ids],
      );
      for (const r of rows) {
        expect(r.attempts).toHaveLength(1);
        expect(r.status).toBe(r.max_attempts === 1 ? 'error' : 'queued');
      }
      const a = await health('replica-runner-0');
      const b = await health('replica-runner-1');
      expect(a.executed + b.executed).toBe(N);
      expect(a.failures + b.failures).toBe(N);
    } finally {
      await replicaA.stop();
      await replicaB.stop();
    }
  });
});

describe('a dropped database connection', () => {
  it('does not crash the process when it is checked out between two queries (as in a reaper pass)', async () => {
    const client = await api.db.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // What a Postgres restart does to every connection: terminated by the administrator (57P01).
      await api.db.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      const err = await waitFor(
        () =>
          client.query('SELECT 1').then(
            () => null,
            (e: unknown) => e as Error,
          ),
        { timeoutMs: 5000, what: 'the terminated connection to fail' },
      );
      expect(err.message).toMatch(/terminat|Connection/i);
    } finally {
      client.release(true);
    }
    // The pool carries on with fresh connections; the reaper too.
    expect(await reaper.runOnce()).not.toBeUndefined();
  });
});
