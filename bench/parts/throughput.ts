import type { SfwClient } from '@session-framework/sdk';
import type { CompleteItem } from '../../src/protocol/schemas.js';
import { HELD_RUN_AT, finishedCount, processingWindow, releaseHeldSessions } from '../lib/seed.js';
import { startGraphile } from '../lib/graphile.js';
import { startApiProcess, startRunnerProcess, until, type Proc } from '../lib/env.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult, Row } from '../lib/report.js';
import { cpuMeter } from '../lib/procs.js';
import { nowMs, ratio, round } from '../lib/stats.js';

/**
 * Part 1, queue throughput: N no-op sessions enqueued in batches, then processed by K `sfw runner`
 * processes through the HTTP API; graphile-worker processes N no-op jobs with the same total concurrency
 * on the same Postgres server. Both are timed from the first start to the last finish, so process start
 * and enqueue are not counted.
 */

const TYPE = 'noop';
const BATCH = 1000;

/** Enqueues n no-op sessions; `held`: not ready until releaseHeldSessions (see measureRunners). */
async function enqueue(client: SfwClient, n: number, held = false): Promise<number> {
  const t0 = nowMs();
  for (let done = 0; done < n; done += BATCH) {
    const count = Math.min(BATCH, n - done);
    await client.createSessions(
      Array.from({ length: count }, () => ({ type: TYPE, ...(held ? { runAt: HELD_RUN_AT } : {}) })),
    );
  }
  return n / ((nowMs() - t0) / 1000);
}

interface Outcome {
  perSec: number;
  seconds: number;
  enqueuePerSec: number;
  /** CPU milliseconds per job, per component (load-independent, unlike jobs/s on a shared machine). */
  cpuMsPerJob: Record<string, number>;
  /** Of which the enqueue (where measured apart). */
  enqueueCpuMsPerJob?: Record<string, number>;
  /** HTTP requests the API answered per session, by route (from its /metrics), enqueue excluded. */
  requestsPerSession?: Record<string, number>;
}

/** Requests answered by the API so far, by "METHOD route", from sfw_api_requests_total. */
async function requestCounts(client: SfwClient): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await client.metrics()).split('\n')) {
    const m = /^sfw_api_requests_total\{(.*)\} (\d+(?:\.\d+)?)$/.exec(line);
    if (!m) continue;
    const labels = new Map([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const key = `${labels.get('method')} ${labels.get('route')}`;
    out.set(key, (out.get(key) ?? 0) + Number(m[2]));
  }
  return out;
}

function perSession(
  before: Map<string, number>,
  after: Map<string, number>,
  n: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0 && !k.includes('/metrics') && !k.includes('/v1/sessions/batch')) out[k] = round(d / n, 3);
  }
  return out;
}

function perJob(cpu: Record<string, number>, n: number): Record<string, number> {
  const out = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round((v * 1000) / n, 3)]));
  out.total = round((Object.values(cpu).reduce((a, b) => a + b, 0) * 1000) / n, 3);
  return out;
}

/** K real runner processes with SESSIONS_DIR=bench/sessions. */
async function measureRunners(
  ctx: BenchContext,
  n: number,
  runners: number,
  perRunner: number,
): Promise<Outcome> {
  const { url, db } = await ctx.pg.sessionsDatabase('throughput');
  const api = await startApiProcess(url);
  const procs: Proc[] = [];
  try {
    for (let k = 0; k < runners; k++) {
      procs.push(
        startRunnerProcess({ apiUrl: api.url, runnerId: `bench-runner-${k}`, maxConcurrency: perRunner }),
      );
    }
    // Runners idle in their long-poll before work arrives: their start-up is not measured.
    await until(
      async () => (await api.client.runners()).filter((r) => r.live).length >= runners,
      `${runners} runners registered`,
      60_000,
      100,
      () => procs.map((p) => p.output().slice(-1000)).join('\n'),
    );
    const meter = () =>
      cpuMeter({
        postgres: ctx.pg.pid,
        api: api.proc.pid,
        ...Object.fromEntries(procs.map((p, k) => [`runner${k}`, p.pid])),
        bench: 'self',
      });
    // As for graphile-worker (jobs added before its worker starts), the queue is full when the runners
    // start on it: sessions are enqueued held, then all made ready at once. CPU counts the enqueue and the
    // processing, not the release.
    const enqueueCpu = meter();
    const enqueuePerSec = await enqueue(api.client, n, true);
    const enqueueUsed = enqueueCpu();
    const requestsBefore = await requestCounts(api.client);
    await releaseHeldSessions(db, TYPE);
    const cpu = meter();
    const deadlineMs = 60_000 + n * 20;
    await until(
      async () => {
        for (const p of procs)
          if (p.child.exitCode !== null)
            throw new Error(`sfw runner exited early: ${p.output().slice(-2000)}`);
        // The rollup's count: polling the sessions table itself would load the server being measured.
        return (await finishedCount(db)) >= n;
      },
      `${n} sessions finished by ${runners} runners`,
      deadlineMs,
      250,
    );
    const processing = cpu();
    const requestsPer = perSession(requestsBefore, await requestCounts(api.client), n);
    const used = Object.fromEntries(
      Object.entries(processing).map(([k, v]) => [k, v + (enqueueUsed[k] ?? 0)]),
    );
    const w = await processingWindow(db, TYPE);
    const seconds = ((w.lastFinishedAt?.getTime() ?? 0) - (w.firstClaimedAt?.getTime() ?? 0)) / 1000;
    return {
      perSec: n / seconds,
      seconds,
      enqueuePerSec,
      cpuMsPerJob: perJob(used, n),
      enqueueCpuMsPerJob: perJob(enqueueUsed, n),
      requestsPerSession: requestsPer,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await api.stop();
    await db.end();
  }
}

/** The API and queue alone: in-process claim loops (no runner process), each claim carrying the last batch's completions. */
async function measureClaimLoops(
  ctx: BenchContext,
  n: number,
  loops: number,
  slots: number,
): Promise<Outcome> {
  const { url, db } = await ctx.pg.sessionsDatabase('throughput_api');
  const api = await startApiProcess(url);
  try {
    const cpu = cpuMeter({ postgres: ctx.pg.pid, api: api.proc.pid, bench: 'self' });
    const enqueuePerSec = await enqueue(api.client, n);
    let finished = 0;
    const deadline = Date.now() + 60_000 + n * 20;
    await Promise.all(
      Array.from({ length: loops }, async (_, k) => {
        let done: CompleteItem[] = [];
        while (finished < n) {
          if (Date.now() > deadline)
            throw new Error(`claim loops: only ${finished} of ${n} sessions done in time`);
          // Each claim carries the previous batch's completions: one request per batch, as a runner does.
          const reply = await api.runnerClient.claim(`bench-loop-${k}`, {
            slots,
            types: [TYPE],
            waitMs: 200,
            maxConcurrency: slots,
            ...(done.length > 0 ? { complete: done } : {}),
          });
          finished += (reply.completed ?? []).filter((c) => c.outcome === 'accepted').length;
          done = reply.sessions.map((s) => ({
            id: s.id,
            leaseToken: s.leaseToken,
            status: 'succeeded' as const,
            result: {},
          }));
        }
        if (done.length > 0) await api.runnerClient.completeMany(`bench-loop-${k}`, done);
      }),
    );
    const used = cpu();
    const w = await processingWindow(db, TYPE);
    const seconds = ((w.lastFinishedAt?.getTime() ?? 0) - (w.firstClaimedAt?.getTime() ?? 0)) / 1000;
    return { perSec: n / seconds, seconds, enqueuePerSec, cpuMsPerJob: perJob(used, n) };
  } finally {
    await api.stop();
    await db.end();
  }
}

async function measureGraphile(ctx: BenchContext, n: number, concurrency: number): Promise<Outcome> {
  const url = await ctx.pg.database('throughput_gw');
  // Jobs are added before the worker starts: only processing is timed (CPU includes the enqueue, as for sfw).
  const seed = await startGraphile(url, 1, {});
  await seed.runner.stop();
  const cpu = cpuMeter({ postgres: ctx.pg.pid, 'graphile-worker (bench process)': 'self' });
  const t0 = nowMs();
  for (let done = 0; done < n; done += BATCH) {
    const count = Math.min(BATCH, n - done);
    await seed.utils.addJobs(Array.from({ length: count }, () => ({ identifier: TYPE, payload: {} })));
  }
  const enqueuePerSec = n / ((nowMs() - t0) / 1000);
  await seed.utils.release();
  let first = 0;
  const gw = await startGraphile(url, concurrency, {
    [TYPE]: async () => {
      if (first === 0) first = nowMs();
    },
  });
  try {
    let left = n;
    await until(
      async () => {
        left = await gw.utils.withPgClient(
          async (c) =>
            (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker.jobs')).rows[0]!.n,
        );
        return left === 0;
      },
      `${n} graphile-worker jobs done`,
      60_000 + n * 20,
      20,
      () => `(${left} left)`,
    );
    const seconds = (nowMs() - first) / 1000;
    return { perSec: n / seconds, seconds, enqueuePerSec, cpuMsPerJob: perJob(cpu(), n) };
  } finally {
    await gw.stop();
  }
}

export async function runThroughput(ctx: BenchContext): Promise<PartResult> {
  const n = size(ctx, 20_000, 200);
  const runners = 2;
  const perRunner = 5;
  const concurrency = runners * perRunner;
  const rows: Row[] = [];
  const details: Record<string, Outcome> = {};
  const row = (system: string, c: number, o: Outcome) => {
    rows.push({
      system,
      n,
      concurrency: c,
      'jobs/s': round(o.perSec, 1),
      seconds: round(o.seconds, 2),
      'enqueue/s': round(o.enqueuePerSec, 0),
      'cpu ms/job': o.cpuMsPerJob.total ?? null,
      'postgres cpu ms/job': o.cpuMsPerJob.postgres ?? null,
    });
    details[system] = o;
  };
  // Shapes: one runner process like the one graphile-worker process, two processes sharing the queue
  // (the distributed case) at the same total concurrency, and four processes × 5 (total 20).
  const shapes: [number, number][] = [
    [1, concurrency],
    [runners, perRunner],
    [4, perRunner],
  ];
  // Each sfw shape is compared with graphile-worker at the same total concurrency: one graphile-worker
  // measurement per distinct total.
  const gwName = (c: number) => (c === concurrency ? 'graphile-worker' : `graphile-worker, concurrency ${c}`);
  const gw = new Map<number, Outcome>();
  for (const c of [...new Set(shapes.map(([k, per]) => k * per))].sort((a, b) => a - b)) {
    ctx.log(`throughput: graphile-worker, ${n} jobs, concurrency ${c}`);
    const o = await measureGraphile(ctx, n, c);
    gw.set(c, o);
    row(gwName(c), c, o);
  }
  const gw10 = gw.get(concurrency)!;
  ctx.log(`throughput: sfw API claim loops (no runner process), ${n} sessions`);
  const loops = await measureClaimLoops(ctx, n, runners, perRunner);
  row(`sfw API, ${runners} in-process claim loops × ${perRunner} slots`, concurrency, loops);
  const notes: string[] = [];
  const ratios: Record<string, number> = {};
  for (const [k, per] of shapes) {
    const label = `sfw, ${k} runner process${k > 1 ? 'es' : ''} × ${per}`;
    const c = k * per;
    ctx.log(`throughput: ${label} (MAX_CONCURRENCY ${per}), ${n} sessions`);
    try {
      const o = await measureRunners(ctx, n, k, per);
      row(label, c, o);
      // The key names the baseline when it is not the concurrency-10 one (keys of earlier results stay).
      const key = `${label} / graphile-worker${c === concurrency ? '' : ` (concurrency ${c})`}`;
      ratios[key] = ratio(o.perSec, gw.get(c)!.perSec);
    } catch (err) {
      notes.push(`${label} could not be measured: ${(err as Error).message.slice(0, 500)}`);
    }
  }
  notes.push(
    'timed from the first claim/start to the last finish; enqueue is measured separately and not counted',
    'each sfw shape is compared with graphile-worker at the same total concurrency (runners × MAX_CONCURRENCY)',
    'sfw: every session is claimed and completed over HTTP (API process) and recorded with its lease, result and attempt history; graphile-worker deletes the finished job',
    ctx.pg.pid === undefined
      ? `same Postgres server (BENCH_DATABASE_URL: PostgreSQL ${ctx.pg.version}, its own settings), separate databases; Postgres CPU is not measured for a server this run did not start`
      : `same Postgres server (embedded PostgreSQL ${ctx.pg.version}, default settings, synchronous_commit on), separate databases`,
  );
  return {
    part: 'throughput',
    rows,
    ratios: { ...ratios, 'sfw API claim loops / graphile-worker': ratio(loops.perSec, gw10.perSec) },
    notes,
    details,
  };
}
