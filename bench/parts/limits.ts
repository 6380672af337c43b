import type { Db } from '../../src/store/db.js';
import { putLimit } from '../../src/store/limits.js';
import { claimSessions, completeSession } from '../../src/store/sessions.js';
import { analyzeSessions, seedQueuedSessions } from '../lib/seed.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult } from '../lib/report.js';
import { nowMs, ratio, summarize, type Summary } from '../lib/stats.js';

/**
 * Part limits: the claim's cost with a full key ahead of the queue. Two databases, the same backlog of
 * sessions without a key; in the second, 10,000 sessions of a key limited to concurrency 1 (its one slot
 * taken) are queued before them, ahead in FIFO order. One runner claims one session and completes it,
 * alternating between the two databases in blocks, so both see the same machine load. The limited claim
 * must cost what the plain one does: the full key's sessions are parked out of the claim's index.
 */

const TYPE = 'work';
const KEY = 'full.example';
const BLOCK = 50;

async function pair(db: Db, runnerId: string): Promise<number> {
  const t0 = nowMs();
  const [s] = await claimSessions(db, {
    runnerId,
    types: [TYPE],
    slots: 1,
    maxConcurrency: 10,
    leaseMs: 30_000,
  });
  const ms = nowMs() - t0;
  if (!s?.leaseToken) throw new Error(`limits: ${runnerId} found nothing to claim`);
  await completeSession(db, s.id, { leaseToken: s.leaseToken, status: 'succeeded', result: {} });
  return ms;
}

export async function runLimits(ctx: BenchContext): Promise<PartResult> {
  const n = size(ctx, 3000, 100);
  const behind = size(ctx, 10_000, 2000);
  const backlog = n + 500;
  const plain = await ctx.pg.sessionsDatabase('limits_plain');
  const limited = await ctx.pg.sessionsDatabase('limits_full');
  const samples = { plain: [] as number[], limited: [] as number[] };
  let parkedAfterWarmUp = 0;
  try {
    ctx.log(`limits: ${behind} sessions of a full key ahead of ${backlog} others`);
    await putLimit(limited.db, KEY, { concurrency: 1 });
    // Older than the backlog (seeded below, created within the last seconds): ahead of it in FIFO order.
    await limited.db.query(
      `INSERT INTO sessions (id, type, input, created_at, updated_at, run_at, concurrency_key)
       SELECT gen_random_uuid(), $1, '{}', t, t, t, $2
       FROM generate_series(1, $3::integer) g, LATERAL (SELECT now() - interval '1 hour' + make_interval(secs => g / 1000.0) AS t) x`,
      [TYPE, KEY, behind],
    );
    // The key's one slot, taken and kept: every other session of the key waits.
    const [holder] = await claimSessions(limited.db, {
      runnerId: 'holder',
      types: [TYPE],
      slots: 1,
      maxConcurrency: 1,
      leaseMs: 3_600_000,
    });
    if (!holder) throw new Error('limits: the key holder claimed nothing');
    for (const { db } of [plain, limited]) {
      await seedQueuedSessions(db, TYPE, backlog);
      await analyzeSessions(db);
    }
    // Warm-up: the first claims of the limited database park the key's sessions (a one-off).
    for (let i = 0; i < 20; i++) {
      await pair(plain.db, 'plain');
      await pair(limited.db, 'limited');
    }
    const { rows } = await limited.db.query<{ n: number }>('SELECT count(*)::int AS n FROM session_held');
    parkedAfterWarmUp = rows[0]?.n ?? 0;
    if (parkedAfterWarmUp !== behind - 1)
      throw new Error(`limits: ${parkedAfterWarmUp} of the full key's ${behind - 1} waiting sessions parked`);
    for (let done = 0; done < n; done += BLOCK) {
      for (let i = 0; i < BLOCK; i++) samples.plain.push(await pair(plain.db, 'plain'));
      for (let i = 0; i < BLOCK; i++) samples.limited.push(await pair(limited.db, 'limited'));
    }
  } finally {
    await plain.db.end();
    await limited.db.end();
  }
  const p: Summary = summarize(samples.plain);
  const l: Summary = summarize(samples.limited);
  const row = (scenario: string, s: Summary) => ({
    scenario,
    n: s.n,
    'claim p50 ms': s.p50,
    'claim p95 ms': s.p95,
    'claim p99 ms': s.p99,
    'claim mean ms': s.mean,
  });
  return {
    part: 'limits',
    rows: [row('no limits', p), row(`${behind} queued behind a full key`, l)],
    ratios: {
      'claim p50, behind a full key / no limits': ratio(l.p50, p.p50),
      'claim p99, behind a full key / no limits': ratio(l.p99, p.p99),
      'claim mean, behind a full key / no limits': ratio(l.mean, p.mean),
    },
    notes: [
      `one runner, claim 1 (store call: sfw_claim, no HTTP) then complete, ${n} times per database, alternating blocks of ${BLOCK}`,
      `the full key's ${behind - 1} waiting sessions: ${parkedAfterWarmUp} parked after the warm-up (the bar: p50 within 1.2x)`,
    ],
    details: { plain: p, limited: l, parkedAfterWarmUp },
  };
}
