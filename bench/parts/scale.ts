import type { SfwClient } from '@session-framework/sdk';
import type { Db } from '../../src/store/db.js';
import { analyzeSessions, explainClaim, seedFinishedSessions, seedQueuedSessions } from '../lib/seed.js';
import { claimSessions, completeSession } from '../../src/store/sessions.js';
import { startApiProcess } from '../lib/env.js';
import { cpuMeter } from '../lib/procs.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult, Row } from '../lib/report.js';
import { nowMs, ratio, round, summarize, type Summary } from '../lib/stats.js';

/**
 * Part 5, scale: claim latency and throughput through the HTTP API (and the bare claim statement) with a
 * small history, a large history, and a large backlog. The ready index must keep claims flat.
 */

const TYPE = 'noop';

interface Measure {
  label: string;
  history: number;
  queued: number;
  httpClaim: Summary;
  dbClaim: Summary;
  claimsPerSec: number;
  /** Postgres CPU per claim+complete pair in the throughput run (steadier than latency on a busy machine). */
  pgCpuMsPerPair: number | null;
  plans: string[];
}

/** One runner claiming one session at a time and completing it: per-claim latency. */
async function claimLatency(client: SfwClient, runnerId: string, n: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    const { sessions } = await client.claim(runnerId, {
      slots: 1,
      types: [TYPE],
      waitMs: 0,
      maxConcurrency: 10,
    });
    samples.push(nowMs() - t0);
    const s = sessions[0];
    if (!s) throw new Error('scale: the queue ran dry during the latency run');
    await client.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded', result: {} });
  }
  return samples;
}

/** The claim statement alone (no HTTP): sfw_claim + the fenced completion, straight on the pool. */
async function dbClaimLatency(db: Db, runnerId: string, n: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    const rows = await claimSessions(db, {
      runnerId,
      types: [TYPE],
      slots: 1,
      maxConcurrency: 10,
      leaseMs: 30_000,
    });
    samples.push(nowMs() - t0);
    const s = rows[0];
    if (!s?.leaseToken) throw new Error('scale: the queue ran dry during the db latency run');
    await completeSession(db, s.id, { leaseToken: s.leaseToken, status: 'succeeded', result: {} });
  }
  return samples;
}

/** `workers` runners claiming 1 and completing, concurrently, until `n` sessions are done: claims/s. */
async function claimThroughput(client: SfwClient, workers: number, n: number): Promise<number> {
  let left = n;
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (left > 0) {
        left--;
        const { sessions } = await client.claim(`scale-tp-${w}`, {
          slots: 1,
          types: [TYPE],
          waitMs: 0,
          maxConcurrency: 10,
        });
        const s = sessions[0];
        if (!s) throw new Error('scale: the queue ran dry during the throughput run');
        await client.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded', result: {} });
      }
    }),
  );
  return n / ((nowMs() - t0) / 1000);
}

export async function runScale(ctx: BenchContext): Promise<PartResult> {
  const smallHistory = size(ctx, 10_000, 1000);
  const largeHistory = size(ctx, 1_000_000, 10_000);
  const backlog = size(ctx, 100_000, 2000);
  const latencyN = size(ctx, 1000, 30);
  const dbLatencyN = size(ctx, 1000, 30);
  const throughputN = size(ctx, 3000, 60);
  const workers = 8;
  const perPhase = latencyN + dbLatencyN + throughputN + 20;

  const { url, db } = await ctx.pg.sessionsDatabase('scale');
  const api = await startApiProcess(url);
  const measures: Measure[] = [];
  try {
    // Warm-up: connections, JIT, prepared plans.
    await seedQueuedSessions(db, TYPE, 200);
    await claimLatency(api.runnerClient, 'scale-warm', 100);
    await dbClaimLatency(db, 'scale-warm-db', 100);

    const phase = async (label: string, history: number, queued: number) => {
      ctx.log(`scale: ${label}: measuring`);
      const httpClaim = summarize(await claimLatency(api.runnerClient, 'scale-lat', latencyN));
      const dbClaim = summarize(await dbClaimLatency(db, 'scale-lat-db', dbLatencyN));
      const cpu = cpuMeter({ postgres: ctx.pg.pid });
      const claimsPerSec = round(await claimThroughput(api.runnerClient, workers, throughputN), 1);
      const pgCpu = cpu().postgres;
      const pgCpuMsPerPair = pgCpu === undefined ? null : round((pgCpu * 1000) / throughputN, 3);
      const plans = await explainClaim(db, 'scale-lat', [TYPE]);
      measures.push({ label, history, queued, httpClaim, dbClaim, claimsPerSec, pgCpuMsPerPair, plans });
    };

    ctx.log(`scale: seeding ${smallHistory} finished sessions`);
    await seedFinishedSessions(db, TYPE, smallHistory);
    await seedQueuedSessions(db, TYPE, perPhase);
    await analyzeSessions(db);
    await phase(`${smallHistory} history`, smallHistory, perPhase);

    ctx.log(`scale: seeding up to ${largeHistory} finished sessions`);
    await seedFinishedSessions(db, TYPE, largeHistory - smallHistory - perPhase - 200);
    await seedQueuedSessions(db, TYPE, perPhase);
    await analyzeSessions(db);
    await phase(`${largeHistory} history`, largeHistory, perPhase);

    ctx.log(`scale: seeding ${backlog} queued sessions`);
    await seedQueuedSessions(db, TYPE, backlog);
    await analyzeSessions(db);
    await phase(`${largeHistory} history + ${backlog} queued`, largeHistory, backlog);
  } finally {
    await api.stop();
    await db.end();
  }

  const [small, large, deep] = measures as [Measure, Measure, Measure];
  const rows: Row[] = measures.map((m) => ({
    scenario: m.label,
    'http claim p50 ms': m.httpClaim.p50,
    'http claim p95 ms': m.httpClaim.p95,
    'http claim p99 ms': m.httpClaim.p99,
    'db claim p50 ms': m.dbClaim.p50,
    'db claim p95 ms': m.dbClaim.p95,
    [`claim+complete/s (${workers} runners)`]: m.claimsPerSec,
    'postgres cpu ms per pair': m.pgCpuMsPerPair,
  }));
  const usesReadyIndex = measures.every((m) => (m.plans[1] ?? '').includes('session_ready_claim_idx'));
  return {
    part: 'scale',
    rows,
    ratios: {
      'http claim p50, large history / small history': ratio(large.httpClaim.p50, small.httpClaim.p50),
      'db claim p50, large history / small history': ratio(large.dbClaim.p50, small.dbClaim.p50),
      'http claim p50, large backlog / small history': ratio(deep.httpClaim.p50, small.httpClaim.p50),
      'db claim p50, large backlog / small history': ratio(deep.dbClaim.p50, small.dbClaim.p50),
      'throughput, large history / small history': ratio(large.claimsPerSec, small.claimsPerSec),
      'throughput, large backlog / small history': ratio(deep.claimsPerSec, small.claimsPerSec),
      ...(small.pgCpuMsPerPair && large.pgCpuMsPerPair && deep.pgCpuMsPerPair
        ? {
            'postgres cpu per pair, large history / small history': ratio(
              large.pgCpuMsPerPair,
              small.pgCpuMsPerPair,
            ),
            'postgres cpu per pair, large backlog / small history': ratio(
              deep.pgCpuMsPerPair,
              small.pgCpuMsPerPair,
            ),
          }
        : {}),
    },
    notes: [
      `claim latency: one runner, claim 1 then complete, ${latencyN} times (HTTP) and ${dbLatencyN} times (store, no HTTP)`,
      `throughput: ${workers} concurrent runners over one keep-alive pool, ${throughputN} claim+complete pairs`,
      `the ready-queue pick ${usesReadyIndex ? 'uses' : 'does NOT use'} session_ready_claim_idx in every scenario`,
    ],
    details: Object.fromEntries(measures.map((m) => [m.label, { ...m }])),
  };
}
