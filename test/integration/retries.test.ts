import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClaimedSession, SessionView } from '../../src/protocol/schemas.js';
import { ApiError } from '@session-framework/sdk';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';

let api: TestApi;

beforeAll(async () => {
  api = await startTestApi('retries');
});
afterAll(async () => {
  await api.stop();
});

/** Makes a requeued session ready now (its backoff is checked before this is called). */
async function skipBackoff(id: string): Promise<void> {
  await api.db.query(`UPDATE sessions SET run_at = now() WHERE id = $1 AND status = 'queued'`, [id]);
}

async function claim(type: string, runnerId = `runner-${type}`): Promise<ClaimedSession> {
  const { sessions } = await api.runnerClient.claim(runnerId, {
    slots: 1,
    types: [type],
    maxConcurrency: 10,
  });
  expect(sessions).toHaveLength(1);
  return sessions[0]!;
}

function backoffMs(s: SessionView): number {
  return Date.parse(s.runAt) - Date.parse(s.updatedAt);
}

describe('retries', () => {
  it('retries infrastructure errors by default with exponential backoff and keeps each attempt', async () => {
    const s = await api.client.createSession({ type: 'retry-error', maxAttempts: 4 });
    expect(s.retryOn).toEqual(['error']);
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      const c = await claim('retry-error');
      expect(c.attempt).toBe(attempt);
      expect(c.maxAttempts).toBe(4);
      const after = await api.runnerClient.complete(s.id, {
        leaseToken: c.leaseToken,
        status: 'error',
        errorMessage: `browser crashed ${attempt}`,
      });
      expect(after.status).toBe('queued');
      expect(after.claimedBy).toBeNull();
      expect(after.finishedAt).toBeNull();
      delays.push(backoffMs(after));
      // Not claimable until its run_at (pushed out so a slow machine cannot reach it first).
      await api.db.query(`UPDATE sessions SET run_at = now() + interval '1 hour' WHERE id = $1`, [s.id]);
      const early = await api.runnerClient.claim('runner-retry-error', { slots: 1, types: ['retry-error'] });
      expect(early.sessions).toHaveLength(0);
      await skipBackoff(s.id);
    }
    // 1 s, 2 s, 4 s, each with jitter in [0.5, 1].
    expect(delays[0]).toBeGreaterThanOrEqual(450);
    expect(delays[0]).toBeLessThanOrEqual(1050);
    expect(delays[1]).toBeGreaterThanOrEqual(950);
    expect(delays[1]).toBeLessThanOrEqual(2050);
    expect(delays[2]).toBeGreaterThanOrEqual(1950);
    expect(delays[2]).toBeLessThanOrEqual(4050);

    const last = await claim('retry-error');
    expect(last.attempt).toBe(4);
    const done = await api.runnerClient.complete(s.id, {
      leaseToken: last.leaseToken,
      status: 'error',
      errorMessage: 'browser crashed 4',
    });
    expect(done.status).toBe('error');
    expect(done.errorMessage).toBe('browser crashed 4');
    expect(done.finishedAt).not.toBeNull();
    expect(done.attempts.map((a) => [a.attempt, a.status, a.errorMessage, a.runnerId])).toEqual([
      [1, 'error', 'browser crashed 1', 'runner-retry-error'],
      [2, 'error', 'browser crashed 2', 'runner-retry-error'],
      [3, 'error', 'browser crashed 3', 'runner-retry-error'],
      [4, 'error', 'browser crashed 4', 'runner-retry-error'],
    ]);
    // The history is what a client reads too.
    expect((await api.client.getSession(s.id)).attempts).toHaveLength(4);
  });

  it('does not retry a script failure unless asked', async () => {
    const s = await api.client.createSession({ type: 'no-retry-failed', maxAttempts: 3 });
    const c = await claim('no-retry-failed');
    const done = await api.runnerClient.complete(s.id, {
      leaseToken: c.leaseToken,
      status: 'failed',
      errorMessage: 'assertion failed',
      result: { steps: [] },
    });
    expect(done.status).toBe('failed');
    expect(done.attempt).toBe(1);
    expect(done.result).toEqual({ steps: [] });
    expect(done.attempts).toHaveLength(1);
  });

  it("retries script failures with retryOn ['failed'], and then not infrastructure errors", async () => {
    const s = await api.client.createSession({ type: 'retry-failed', maxAttempts: 3, retryOn: ['failed'] });
    expect(s.retryOn).toEqual(['failed']);
    const c1 = await claim('retry-failed');
    const a1 = await api.runnerClient.complete(s.id, { leaseToken: c1.leaseToken, status: 'failed' });
    expect(a1.status).toBe('queued');
    await skipBackoff(s.id);
    const c2 = await claim('retry-failed');
    expect(c2.attempt).toBe(2);
    const a2 = await api.runnerClient.complete(s.id, {
      leaseToken: c2.leaseToken,
      status: 'error',
      errorMessage: 'runner out of memory',
    });
    expect(a2.status).toBe('error');
    expect(a2.attempts.map((a) => a.status)).toEqual(['failed', 'error']);
  });

  it('retries both when asked, and stops at the first success', async () => {
    const s = await api.client.createSession({
      type: 'retry-both',
      maxAttempts: 5,
      retryOn: ['error', 'failed'],
    });
    const c1 = await claim('retry-both');
    expect(
      (await api.runnerClient.complete(s.id, { leaseToken: c1.leaseToken, status: 'failed' })).status,
    ).toBe('queued');
    await skipBackoff(s.id);
    const c2 = await claim('retry-both');
    expect(
      (await api.runnerClient.complete(s.id, { leaseToken: c2.leaseToken, status: 'error' })).status,
    ).toBe('queued');
    await skipBackoff(s.id);
    const c3 = await claim('retry-both');
    const done = await api.runnerClient.complete(s.id, {
      leaseToken: c3.leaseToken,
      status: 'succeeded',
      result: { ok: true },
    });
    expect(done.status).toBe('succeeded');
    expect(done.result).toEqual({ ok: true });
    expect(done.attempts.map((a) => a.status)).toEqual(['failed', 'error', 'succeeded']);
    // Times in the history are written like every other time of the API.
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    for (const a of done.attempts) {
      expect(a.startedAt).toMatch(iso);
      expect(a.finishedAt).toMatch(iso);
    }
    // A repeat of the accepted completion (its answer lost on the wire) is answered, not refused.
    const repeat = await api.runnerClient.complete(s.id, {
      leaseToken: c3.leaseToken,
      status: 'succeeded',
      result: { ok: true },
    });
    expect(repeat.status).toBe('succeeded');
    expect(repeat.attempts).toHaveLength(3);
    // An earlier attempt's token writes nothing.
    await expect(
      api.runnerClient.complete(s.id, { leaseToken: c1.leaseToken, status: 'failed' }),
    ).rejects.toMatchObject({ httpStatus: 409 });
  });

  it('shows history written by an earlier release in the API’s time format', async () => {
    const s = await api.client.createSession({ type: 'old-history' });
    await api.db.query(`UPDATE sessions SET attempts = $2::jsonb WHERE id = $1`, [
      s.id,
      JSON.stringify([
        {
          attempt: 1,
          runnerId: 'r',
          status: 'queued',
          errorMessage: null,
          startedAt: '2026-12-01T23:02:56.802538+00:00',
          finishedAt: '2026-12-01T23:03:01.5+00:00',
        },
      ]),
    ]);
    const view = await api.client.getSession(s.id);
    expect(view.attempts[0]).toMatchObject({
      startedAt: '2026-12-01T23:02:56.802Z',
      finishedAt: '2026-12-01T23:03:01.500Z',
    });
  });

  it('refuses a repeat under the same lease with a different outcome (409), on every completion door', async () => {
    const s = await api.client.createSession({ type: 'repeat-conflict' });
    const c = await claim('repeat-conflict');
    const first = { leaseToken: c.leaseToken, status: 'succeeded' as const, result: { items: [1, 2], n: 2 } };
    await api.runnerClient.complete(s.id, first);
    // Identical (keys in another order are the same JSON): answered as stored.
    const same = await api.runnerClient.complete(s.id, {
      leaseToken: c.leaseToken,
      status: 'succeeded',
      result: { n: 2, items: [1, 2] },
    });
    expect(same.status).toBe('succeeded');
    // A different status, error or result under the same token: refused, the first one stands.
    for (const other of [
      { leaseToken: c.leaseToken, status: 'failed' as const, errorMessage: 'assertion failed' },
      { leaseToken: c.leaseToken, status: 'succeeded' as const, result: { items: [1], n: 1 } },
      { leaseToken: c.leaseToken, status: 'succeeded' as const },
    ]) {
      await expect(api.runnerClient.complete(s.id, other)).rejects.toMatchObject({
        httpStatus: 409,
        code: 'CONFLICT',
      });
      const batch = await api.runnerClient.completeMany('repeat-conflict-runner', [{ id: s.id, ...other }]);
      expect(batch.items).toEqual([{ id: s.id, outcome: 'conflict' }]);
    }
    const stored = await api.client.getSession(s.id);
    expect(stored.status).toBe('succeeded');
    expect(stored.result).toEqual({ items: [1, 2], n: 2 });
    expect(stored.attempts).toHaveLength(1);
    const again = await api.runnerClient.completeMany('repeat-conflict-runner', [{ id: s.id, ...first }]);
    expect(again.items).toEqual([{ id: s.id, outcome: 'accepted', status: 'succeeded' }]);
  });

  it('validates maxAttempts and retryOn at enqueue', async () => {
    for (const body of [
      { type: 'x', maxAttempts: 0 },
      { type: 'x', maxAttempts: 101 },
      { type: 'x', maxAttempts: 1.5 },
      { type: 'x', retryOn: ['succeeded'] },
      { type: 'x', retryOn: ['error', 'error'] },
    ]) {
      const err = await api.client.createSession(body as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(body)).toBeInstanceOf(ApiError);
      expect((err as ApiError).httpStatus).toBe(400);
    }
  });

  it('hands sessions of a stopping runner back without spending an attempt', async () => {
    const s = await api.client.createSession({ type: 'handback', maxAttempts: 1 });
    const c = await claim('handback');
    const out = await api.runnerClient.stopRunner('runner-handback', {
      requeue: [{ id: s.id, leaseToken: c.leaseToken }],
    });
    expect(out.requeued).toEqual([s.id]);
    const after = await api.client.getSession(s.id);
    expect(after.status).toBe('queued');
    expect(after.attempt).toBe(0);
    expect(after.attempts).toMatchObject([{ attempt: 1, status: 'queued' }]);
    const again = await claim('handback', 'other-runner');
    expect(again.attempt).toBe(1);
    // The stopped runner's token is worthless now.
    await expect(
      api.runnerClient.complete(s.id, { leaseToken: c.leaseToken, status: 'succeeded' }),
    ).rejects.toMatchObject({ httpStatus: 409 });
    await api.runnerClient.complete(s.id, { leaseToken: again.leaseToken, status: 'succeeded' });
  });
});

describe('undelivered claims', () => {
  it('hands the sessions of a claim whose answer never reached the runner back at once', async () => {
    const s = await api.client.createSession({ type: 'undelivered', maxAttempts: 1 });
    // Hold the runner's claim lock so the claim is still in the database when the runner goes away.
    const blocker = await api.db.connect();
    try {
      await blocker.query(`SELECT pg_advisory_lock(hashtextextended('sfw.claim:' || $1, 0))`, [
        'gone-runner',
      ]);
      const ac = new AbortController();
      const claim = fetch(`${api.url}/v1/runners/gone-runner/claim`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ slots: 1, types: ['undelivered'] }),
        signal: ac.signal,
      }).catch((err: unknown) => err);
      await waitFor(
        async () => {
          const { rows } = await api.db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%sfw_exchange%'`,
          );
          return rows[0]!.n > 0;
        },
        { timeoutMs: 5000, what: 'the claim to wait on the lock' },
      );
      ac.abort();
      expect(await claim).toBeInstanceOf(Error);
    } finally {
      await blocker.query(`SELECT pg_advisory_unlock(hashtextextended('sfw.claim:' || $1, 0))`, [
        'gone-runner',
      ]);
      blocker.release();
    }
    const back = await waitFor(
      async () => {
        const v = await api.client.getSession(s.id);
        return v.status === 'queued' && v.attempts.length === 1 ? v : null;
      },
      { timeoutMs: 5000, what: 'the undelivered claim to be handed back' },
    );
    expect(back.attempt).toBe(0);
    expect(back.claimedBy).toBeNull();
    expect(back.attempts).toMatchObject([{ runnerId: 'gone-runner', status: 'queued' }]);
    // Another runner gets it, with its one attempt intact.
    const again = await claim('undelivered', 'present-runner');
    expect(again.attempt).toBe(1);
    await api.runnerClient.complete(s.id, { leaseToken: again.leaseToken, status: 'succeeded' });
  });
});

describe('cancellation', () => {
  it('cancels a queued session at once', async () => {
    const s = await api.client.createSession({ type: 'cancel-queued', maxAttempts: 3 });
    const c = await api.client.cancelSession(s.id);
    expect(c.status).toBe('cancelled');
    expect(c.finishedAt).not.toBeNull();
    expect(c.cancelRequested).toBe(true);
    const { sessions } = await api.runnerClient.claim('cancel-runner', {
      slots: 5,
      types: ['cancel-queued'],
    });
    expect(sessions).toHaveLength(0);
    // Cancelling again, or cancelling a finished session, changes nothing.
    const again = await api.client.cancelSession(s.id);
    expect(again.status).toBe('cancelled');
    expect(again.finishedAt).toBe(c.finishedAt);
  });

  it('flags a running session; the heartbeat reply lists it and the runner ends it as cancelled, artifacts kept', async () => {
    const s = await api.client.createSession({ type: 'cancel-running', maxAttempts: 3 });
    const c = await claim('cancel-running');
    await api.runnerClient.uploadArtifact(s.id, 'before.png', c.leaseToken, Buffer.from('png'));
    const beat = () =>
      api.runnerClient.heartbeat('runner-cancel-running', {
        activeSessions: 1,
        maxConcurrency: 3,
        sessions: [{ id: s.id, leaseToken: c.leaseToken }],
      });
    expect((await beat()).cancel).toEqual([]);
    const flagged = await api.client.cancelSession(s.id);
    expect(flagged.status).toBe('running');
    expect(flagged.cancelRequested).toBe(true);
    const reply = await beat();
    expect(reply.cancel).toEqual([s.id]);
    expect(reply.lost).toEqual([]);
    const done = await api.runnerClient.complete(s.id, {
      leaseToken: c.leaseToken,
      status: 'cancelled',
      errorMessage: 'cancelled by request',
    });
    expect(done.status).toBe('cancelled');
    expect(done.artifacts.map((a) => a.name)).toEqual(['before.png']);
    expect((await api.client.getArtifact(s.id, 'before.png')).data.toString()).toBe('png');
  });

  it('does not retry a cancelled session even when the runner reports an error', async () => {
    const s = await api.client.createSession({ type: 'cancel-error', maxAttempts: 3 });
    const c = await claim('cancel-error');
    await api.client.cancelSession(s.id);
    const done = await api.runnerClient.complete(s.id, { leaseToken: c.leaseToken, status: 'error' });
    expect(done.status).toBe('error');
    expect(done.attempts).toHaveLength(1);
  });

  it('answers 404 for an unknown session and 400 for a malformed id', async () => {
    await expect(api.client.cancelSession('01900000-0000-7000-8000-000000000000')).rejects.toMatchObject({
      httpStatus: 404,
    });
    await expect(api.client.cancelSession('nope')).rejects.toMatchObject({ httpStatus: 400 });
  });
});
