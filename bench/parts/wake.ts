import { startGraphile } from '../lib/graphile.js';
import { startApiProcess, until } from '../lib/env.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult } from '../lib/report.js';
import { nowMs, ratio, summarize, type Summary } from '../lib/stats.js';

/**
 * Part 2, wake latency: idle runners long-poll; sessions are enqueued one at a time and we measure
 * enqueue → claimed. The same for graphile-worker: add_job → task start, on the same Postgres server.
 */

const CLAIMERS = 4;

interface Measured {
  latency: Summary;
  /** How long the enqueue call itself took (its commit included). */
  enqueue: Summary;
}

/** A pause between enqueues so every idle claimer is back in its long-poll (randomised, 20-40 ms). */
const settle = () => new Promise((r) => setTimeout(r, 20 + Math.random() * 20));

async function measureOurs(ctx: BenchContext, n: number): Promise<Measured> {
  const { url, db } = await ctx.pg.sessionsDatabase('wake');
  await db.end();
  const api = await startApiProcess(url);
  const samples: number[] = [];
  const enqueueMs: number[] = [];
  let idle = 0;
  let stopping = false;
  const claimed = new Set<string>();
  const ac = new AbortController();
  const claimer = async (k: number) => {
    while (!stopping) {
      idle++;
      let got;
      try {
        got = await api.runnerClient.claim(
          `wake-${k}`,
          { slots: 1, types: ['wake'], waitMs: 30_000, maxConcurrency: 1 },
          ac.signal,
        );
      } catch (err) {
        if (stopping) return;
        throw err;
      } finally {
        idle--;
      }
      for (const s of got.sessions) {
        samples.push(nowMs() - (s.input as { t0: number }).t0);
        claimed.add(s.id);
        await api.runnerClient.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded', result: {} });
      }
    }
  };
  const loops = Array.from({ length: CLAIMERS }, (_, k) => claimer(k));
  try {
    for (let i = 0; i < n; i++) {
      await until(() => idle === CLAIMERS, 'claimers back in their long-poll', 30_000, 1);
      await settle();
      const t0 = nowMs();
      const s = await api.client.createSession({ type: 'wake', input: { t0 } });
      enqueueMs.push(nowMs() - t0);
      await until(() => claimed.has(s.id), `session ${s.id} claimed`, 30_000, 1);
    }
  } finally {
    stopping = true;
    ac.abort();
    await Promise.allSettled(loops);
    await api.stop();
  }
  const skip = Math.min(5, Math.floor(n / 10));
  return { latency: summarize(samples.slice(skip)), enqueue: summarize(enqueueMs.slice(skip)) };
}

async function measureGraphile(ctx: BenchContext, n: number): Promise<Measured> {
  const url = await ctx.pg.database('wake_gw');
  const samples: number[] = [];
  const enqueueMs: number[] = [];
  let started = 0;
  const gw = await startGraphile(url, CLAIMERS, {
    wake: async (payload) => {
      samples.push(nowMs() - (payload as { t0: number }).t0);
      started++;
    },
  });
  try {
    for (let i = 0; i < n; i++) {
      await settle();
      const t0 = nowMs();
      await gw.utils.addJob('wake', { t0 });
      enqueueMs.push(nowMs() - t0);
      await until(() => started === i + 1, 'graphile-worker task start', 30_000, 1);
    }
  } finally {
    await gw.stop();
  }
  const skip = Math.min(5, Math.floor(n / 10));
  return { latency: summarize(samples.slice(skip)), enqueue: summarize(enqueueMs.slice(skip)) };
}

export async function runWake(ctx: BenchContext): Promise<PartResult> {
  const n = size(ctx, 300, 20);
  ctx.log(`wake: ours, ${n} sessions one at a time, ${CLAIMERS} idle long-polling runners`);
  const ours = await measureOurs(ctx, n);
  ctx.log(`wake: graphile-worker, ${n} jobs one at a time, concurrency ${CLAIMERS}`);
  const gw = await measureGraphile(ctx, n);
  const row = (name: string, m: Measured) => ({
    system: name,
    n: m.latency.n,
    'p50 ms': m.latency.p50,
    'p95 ms': m.latency.p95,
    'p99 ms': m.latency.p99,
    'max ms': m.latency.max,
    'enqueue call p50 ms': m.enqueue.p50,
  });
  return {
    part: 'wake',
    rows: [
      row('sfw: enqueue (HTTP) → claimed (HTTP long-poll)', ours),
      row('graphile-worker: addJob → task start', gw),
    ],
    ratios: {
      'sfw p50 ms': ours.latency.p50,
      'p50 sfw / graphile-worker': ratio(ours.latency.p50, gw.latency.p50),
      'p95 sfw / graphile-worker': ratio(ours.latency.p95, gw.latency.p95),
    },
    notes: [
      'sfw latency includes two HTTP round trips (the enqueue POST and the claim answer) on 127.0.0.1; graphile-worker runs in-process',
      `${CLAIMERS} idle claimers / concurrency ${CLAIMERS}; the first samples are dropped as warm-up`,
      "the guide's plain 5000 ms polling would average 2500 ms",
    ],
    details: { sfw: ours, graphileWorker: gw },
  };
}
