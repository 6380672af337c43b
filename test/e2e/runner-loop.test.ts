import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/time.js';
import { SfwClient } from '../../src/sdk/client.js';
import type { Executor, RunnerApi } from '../../src/runner/types.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';
import { apiOutage, runningByRunner, sleepExecutor, startRunner } from '../helpers/runner.js';

/** The runner loop against a real API and Postgres, with a `browser: false` executor injected. */

let api: TestApi;

beforeAll(async () => {
  api = await startTestApi('runner_loop');
});
afterAll(async () => {
  await api.stop();
});

async function clearQueue(): Promise<void> {
  await api.db.query(`DELETE FROM sessions`);
}

describe('runner loop', () => {
  it('two runners with MAX_CONCURRENCY=2 over 20 sessions: never more than 2 each, all done, priority order', async () => {
    await clearQueue();
    const { items } = await api.client.createSessions(
      Array.from({ length: 20 }, (_, i) => ({ type: 'sleep', priority: i, input: { ms: 120 } })),
    );
    const starts: number[] = [];
    const recording: Executor = async (s, ctx) => {
      starts.push(s.priority);
      return sleepExecutor(s, ctx);
    };
    let watching = true;
    let maxSeen = 0;
    let samples = 0;
    const watcher = (async () => {
      while (watching) {
        for (const n of (await runningByRunner(api.db)).values()) maxSeen = Math.max(maxSeen, n);
        samples++;
        await sleep(10);
      }
    })();
    const runners = await Promise.all(
      ['loop-a', 'loop-b'].map((runnerId) =>
        startRunner(api, { runnerId, maxConcurrency: 2, executor: recording }),
      ),
    );
    try {
      await waitFor(
        async () => {
          const { rows } = await api.db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM sessions WHERE status = 'succeeded'`,
          );
          return rows[0]!.n === 20;
        },
        { timeoutMs: 30_000, what: '20 sessions succeeded' },
      );
    } finally {
      watching = false;
      await watcher;
      await Promise.all(runners.map((r) => r.stop()));
    }
    expect(samples).toBeGreaterThan(20);
    expect(maxSeen).toBeGreaterThan(0);
    expect(maxSeen).toBeLessThanOrEqual(2);
    const { rows } = await api.db.query<{ claimed_by: string; status: string; attempt: number }>(
      `SELECT claimed_by, status, attempt FROM sessions WHERE id = ANY($1)`,
      [items.map((s) => s.id)],
    );
    expect(rows.every((r) => r.status === 'succeeded' && r.attempt === 1)).toBe(true);
    expect(new Set(rows.map((r) => r.claimed_by))).toEqual(new Set(['loop-a', 'loop-b']));
    // Highest priority first: the k-th session started is within the 4 slots' window of rank k.
    expect(starts).toHaveLength(20);
    starts.forEach((priority, k) => expect(Math.abs(19 - priority - k)).toBeLessThan(4));
    const health = await api.client.runners();
    for (const id of ['loop-a', 'loop-b']) {
      const h = health.find((r) => r.runnerId === id)!;
      expect(h.status).toBe('stopped');
      expect(h.maxConcurrency).toBe(2);
    }
    expect(health.reduce((n, r) => n + r.totalSessionsExecuted, 0)).toBe(20);
  });

  it('a busy runner reports on its claims; the fallback door takes only what no claim carries', async () => {
    await clearQueue();
    const { items } = await api.client.createSessions(
      Array.from({ length: 12 }, () => ({ type: 'sleep', input: { ms: 100 } })),
    );
    const client = new SfwClient({ baseUrl: api.url, retries: 0, timeoutMs: 10_000 });
    const reported = { onClaims: 0, fallback: 0 };
    const counting: RunnerApi = {
      claim: (id, body, signal) => {
        reported.onClaims += body.complete?.length ?? 0;
        return client.claim(id, body, signal);
      },
      completeMany: (id, complete) => {
        reported.fallback += complete.length;
        return client.completeMany(id, complete);
      },
      heartbeat: (id, body) => client.heartbeat(id, body),
      uploadArtifact: (...args) => client.uploadArtifact(...args),
      stopRunner: (id, body) => client.stopRunner(id, body),
    };
    const r = await startRunner(api, { runnerId: 'loop-doors', maxConcurrency: 2, client: counting });
    try {
      for (const s of items)
        expect((await api.client.waitUntilDone(s.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
    } finally {
      expect(await r.stop()).toBe(0);
      await client.close();
    }
    // Each report once; while the queue had work, every one rode on the claim that refilled its slot.
    expect(reported.onClaims + reported.fallback).toBe(12);
    expect(reported.onClaims).toBeGreaterThanOrEqual(9);
  });

  it('cancel of a running session ends it as cancelled within one heartbeat', async () => {
    await clearQueue();
    const r = await startRunner(api, { runnerId: 'loop-cancel', heartbeatIntervalMs: 1000 });
    try {
      const s = await api.client.createSession({ type: 'sleep', input: { ms: 60_000 } });
      await waitFor(async () => (await api.client.getSession(s.id)).status === 'running', {
        what: 'session running',
      });
      const t0 = Date.now();
      await api.client.cancelSession(s.id);
      const done = await api.client.waitUntilDone(s.id, { timeoutMs: 10_000 });
      const ms = Date.now() - t0;
      expect(done.status).toBe('cancelled');
      expect(done.errorMessage).toBe('Cancelled by request');
      // One heartbeat interval, plus slack for a loaded machine.
      expect(ms).toBeLessThan(1000 + 1500);
      await waitFor(() => r.runner.activeSessions === 0, { what: 'runner released the session' });
    } finally {
      expect(await r.stop()).toBe(0);
    }
  });

  it('follows scheduler_config.max_concurrency live when MAX_CONCURRENCY is not set', async () => {
    await clearQueue();
    await api.client.setSchedulerConfig({ maxConcurrency: 1 });
    const r = await startRunner(api, { runnerId: 'loop-sched' });
    try {
      expect(r.runner.maxConcurrency).toBe(1);
      await api.client.createSessions(
        Array.from({ length: 6 }, () => ({ type: 'sleep', input: { ms: 3000 } })),
      );
      await waitFor(async () => (await runningByRunner(api.db)).get('loop-sched') === 1, {
        what: 'one running',
      });
      await api.client.setSchedulerConfig({ maxConcurrency: 3 });
      await waitFor(async () => (await runningByRunner(api.db)).get('loop-sched') === 3, {
        timeoutMs: 5000,
        what: 'three running after the config change',
      });
      expect(r.runner.maxConcurrency).toBe(3);
      const row = (await api.client.runners()).find((x) => x.runnerId === 'loop-sched')!;
      await waitFor(async () => {
        const h = (await api.client.runners()).find((x) => x.runnerId === 'loop-sched')!;
        return h.maxConcurrency === 3 && h.effectiveConcurrency === 3;
      });
      expect(row.memoryRssBytes).toBeGreaterThan(0);
    } finally {
      await r.runner.force();
      await r.client.close();
      await api.client.setSchedulerConfig({ maxConcurrency: 3 });
    }
    const { rows } = await api.db.query<{ status: string; n: number }>(
      `SELECT status, count(*)::int AS n FROM sessions GROUP BY status`,
    );
    expect(Object.fromEntries(rows.map((x) => [x.status, x.n]))).toEqual({ queued: 6 });
  });

  it('keeps a finished result through an API outage and delivers it when the API is back', async () => {
    await clearQueue();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gated: Executor = async (s) => {
      await gate;
      return { status: 'succeeded', result: { id: s.id, survived: 'outage' } };
    };
    const r = await startRunner(api, { runnerId: 'loop-outage', executor: gated, maxConcurrency: 1 });
    try {
      const s = await api.client.createSession({ type: 'sleep' });
      await waitFor(async () => (await api.client.getSession(s.id)).status === 'running', {
        what: 'session running',
      });
      const outage = await apiOutage(api);
      release();
      // The result is held and retried while the API is away (heartbeats and claims fail too).
      await waitFor(() => r.runner.activeSessions === 1, { what: 'result held' });
      await sleep(1500);
      expect(r.runner.activeSessions).toBe(1);
      await outage.restore();
      const done = await api.client.waitUntilDone(s.id, { timeoutMs: 15_000 });
      expect(done.status).toBe('succeeded');
      expect(done.result).toEqual({ id: s.id, survived: 'outage' });
      expect(done.attempt).toBe(1);
      // And the runner claims again.
      const next = await api.client.createSession({ type: 'sleep' });
      expect((await api.client.waitUntilDone(next.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
    } finally {
      expect(await r.stop()).toBe(0);
    }
  });
  it('hands in-flight sessions back to the queue when the shutdown timeout passes', async () => {
    await clearQueue();
    const r = await startRunner(api, { runnerId: 'loop-timeout', shutdownTimeoutMs: 300 });
    const s = await api.client.createSession({ type: 'sleep', input: { ms: 60_000 } });
    await waitFor(async () => (await api.client.getSession(s.id)).status === 'running', {
      what: 'session running',
    });
    const t0 = Date.now();
    expect(await r.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    const back = await api.client.getSession(s.id);
    expect(back.status).toBe('queued');
    expect(back.claimedBy).toBeNull();
    expect(back.attempts.at(-1)).toMatchObject({ runnerId: 'loop-timeout', status: 'queued' });
    const h = (await api.client.runners()).find((x) => x.runnerId === 'loop-timeout')!;
    expect(h.status).toBe('stopped');
  });
  it('a claim answered while the runner is stopping still reaches it: the session runs, nothing is stranded', async () => {
    await clearQueue();
    const r = await startRunner(api, { runnerId: 'loop-stop-claim', pollIntervalMs: 3000 });
    // The runner is idle in its long-poll; stop it, then give the pending poll work before it returns.
    await waitFor(async () => (await api.client.runners()).some((x) => x.runnerId === 'loop-stop-claim'), {
      what: 'runner registered',
    });
    const stopping = r.stop();
    const s = await api.client.createSession({ type: 'sleep', input: { ms: 50 } });
    expect(await stopping).toBe(0);
    const after = await api.client.getSession(s.id);
    // Either the pending claim brought it (and it ran to the end) or it stayed queued; never stranded running.
    expect(['succeeded', 'queued']).toContain(after.status);
    const h = (await api.client.runners()).find((x) => x.runnerId === 'loop-stop-claim')!;
    expect(h.status).toBe('stopped');
    expect(h.runningSessions).toBe(0);
  });
  it('a lapsed lease: the old attempt is aborted and never reported; the attempt that follows wins', async () => {
    // A short lease and no renewal in between: the reaper recovers the session and this runner claims it again.
    const short = await startTestApi('runner_lost', { staleSessionTimeoutMs: 1000, reaperIntervalMs: 100 });
    const aborted: number[] = [];
    const exec: Executor = async (s, { signal }) => {
      if (s.attempt === 1) {
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
        aborted.push(s.attempt);
        return { status: 'succeeded', result: { attempt: 1 } };
      }
      return { status: 'succeeded', result: { attempt: s.attempt } };
    };
    const r = await startRunner(short, { runnerId: 'loop-lost', executor: exec, heartbeatIntervalMs: 2500 });
    try {
      const s = await short.client.createSession({ type: 'sleep', maxAttempts: 3 });
      // The runner started it (as its first heartbeat would confirm; here the lease lapses before that).
      await waitFor(
        async () =>
          (
            await short.db.query(
              `UPDATE sessions SET confirmed_at = now() WHERE id = $1 AND status = 'running' AND attempt = 1`,
              [s.id],
            )
          ).rowCount === 1,
        { timeoutMs: 5000, intervalMs: 20, what: 'attempt 1 to start' },
      );
      const done = await short.client.waitUntilDone(s.id, { timeoutMs: 20_000 });
      expect(done.status).toBe('succeeded');
      expect(done.result).toEqual({ attempt: done.attempt });
      expect(done.attempt).toBeGreaterThanOrEqual(2);
      expect(done.attempts[0]).toMatchObject({ attempt: 1, errorMessage: 'Runner connection lost' });
      // The first attempt is stopped at once (superseded by the new claim) or at the next heartbeat (lost).
      await waitFor(() => aborted.length === 1, { timeoutMs: 5000, what: 'attempt 1 aborted' });
      await waitFor(() => r.runner.activeSessions === 0, { what: 'runner holds nothing' });
      expect((await short.client.getSession(s.id)).result).toEqual({ attempt: done.attempt });
    } finally {
      await r.stop();
      await short.stop();
    }
  });
  it('memory-aware admission: with memory for one browser session, claims one at a time', async () => {
    await clearQueue();
    const MB = 1024 * 1024;
    let active = () => 0;
    const r = await startRunner(api, {
      runnerId: 'loop-memory',
      maxConcurrency: 4,
      types: [{ name: 'sleep', browser: true }],
      // 1.2 GB free when idle; each running session takes its 500 MB budget out of it.
      freeMemory: () => 1200 * MB - active() * 500 * MB,
    });
    active = () => r.runner.activeSessions;
    let maxSeen = 0;
    try {
      expect(r.runner.effectiveConcurrency()).toBe(1);
      const { items } = await api.client.createSessions(
        Array.from({ length: 4 }, () => ({ type: 'sleep', input: { ms: 150 } })),
      );
      await waitFor(
        async () => {
          maxSeen = Math.max(maxSeen, (await runningByRunner(api.db)).get('loop-memory') ?? 0);
          const done = await Promise.all(items.map((s) => api.client.getSession(s.id)));
          return done.every((s) => s.status === 'succeeded');
        },
        { timeoutMs: 20_000, intervalMs: 10, what: 'four sessions done' },
      );
      expect(maxSeen).toBe(1);
      const h = (await api.client.runners()).find((x) => x.runnerId === 'loop-memory')!;
      expect(h.maxConcurrency).toBe(4);
      expect(h.effectiveConcurrency).toBe(1);
    } finally {
      await r.stop();
    }
  });
});
