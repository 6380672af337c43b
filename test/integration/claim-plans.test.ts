import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db, DbClient } from '../../src/store/db.js';
import {
  HELD_RUN_AT,
  explainClaim,
  releaseHeldSessions,
  seedFinishedSessions,
  seedQueuedSessions,
} from '../../bench/lib/seed.js';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import { exchange, insertSessions } from '../../src/store/sessions.js';
import { putLimit } from '../../src/store/limits.js';
import { freshDb } from '../helpers/db.js';

/**
 * The claim and completion path is fast by construction: Postgres time (EXPLAIN ANALYZE of the real
 * calls, not wall clock) and pages touched stay small with statistics fresh, stale or absent, with a deep
 * history, a deep queue of other types and thousands of sessions running, and on a server with JIT on
 * (the suite runs this file against one too: TEST_DATABASE_URL). Each case is one that a planner setting
 * or a cached plan once turned into hundreds of milliseconds.
 */

const LEASE_MS = 30_000;
const HISTORY = 100_000;
const OTHER_READY = 100_000;
const RUNNING = 2_000;
// Pages touched are the measure (the same whatever the machine's load); time has a generous bound that a
// JIT compilation (350-500 ms per call) or a plan reading thousands of rows still exceeds.
const MAX_MS = 150;
const MAX_BUFFERS = 1_500;
// No scan of the history (`sessions`) in any statement of a claim or completion reads more rows than a
// batch and its limits need. The hot set's small tables may be read whole while they are small (the
// planner's own choice below a few thousand rows: cheaper than as many index probes), never beyond.
const MAX_SCAN_ROWS = 100;
const MAX_HOT_SCAN_ROWS = 5_000;

let db: Db;
let client: DbClient;

interface Cost {
  ms: number;
  buffers: number;
  /**
   * Most rows any one scan read in any statement the call ran (its nested statements included), as a share
   * of what it may read: MAX_SCAN_ROWS for the history, MAX_HOT_SCAN_ROWS for the hot set's tables.
   */
  maxScanRows: number;
  /** The statement of that scan and its plan, for the failure message. */
  worst: string;
  plan: string;
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

/**
 * Rows read by the scans of a plan (returned or filtered out), the most of any one scan, as a share of
 * what that scan may read (over 1: too many).
 */
function scanRows(node: PlanNode): number {
  // A bitmap index scan counts index entries of rows already gone (its heap scan is counted instead).
  const counted = !['Function Scan', 'Bitmap Index Scan'].includes(node['Node Type']);
  const limit = node['Relation Name'] === 'sessions' ? MAX_SCAN_ROWS : MAX_HOT_SCAN_ROWS;
  const own =
    /Scan/.test(node['Node Type']) && counted
      ? (((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1)) /
        limit
      : 0;
  return Math.max(own, ...(node.Plans ?? []).map(scanRows));
}

/**
 * Postgres' own time and shared buffers touched for one statement (run for real, then rolled back), and,
 * through auto_explain, the plans of every statement it ran inside functions and triggers.
 */
async function pgCost(
  sql: string,
  params: unknown[],
  { keep = false, on = client }: { keep?: boolean; on?: DbClient } = {},
): Promise<Cost> {
  const nested: { text: string; plan: PlanNode }[] = [];
  const onNotice = (n: { message?: string }) => {
    const m = String(n.message ?? '');
    const at = m.indexOf('{');
    if (!m.startsWith('duration:') || at < 0) return;
    const doc = JSON.parse(m.slice(at)) as { 'Query Text': string; Plan: PlanNode };
    nested.push({ text: doc['Query Text'], plan: doc.Plan });
  };
  await on.query('BEGIN');
  on.on('notice', onNotice);
  try {
    const { rows } = await on.query<{ 'QUERY PLAN': unknown }>(
      `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`,
      params,
    );
    const raw = rows[0]!['QUERY PLAN'];
    const doc = (typeof raw === 'string' ? JSON.parse(raw) : raw) as {
      Plan: Record<string, number>;
      'Execution Time': number;
      'Planning Time': number;
    }[];
    const top = doc[0]!;
    let maxScanRows = 0;
    let worst = '';
    for (const n of nested) {
      const r = scanRows(n.plan);
      if (r > maxScanRows) {
        maxScanRows = r;
        worst = `${n.text}\n${JSON.stringify(n.plan)}`;
      }
    }
    return {
      ms: top['Execution Time'] + top['Planning Time'],
      buffers: (top.Plan['Shared Hit Blocks'] ?? 0) + (top.Plan['Shared Read Blocks'] ?? 0),
      maxScanRows,
      worst,
      plan: JSON.stringify(top.Plan),
    };
  } finally {
    on.off('notice', onNotice);
    await on.query(keep ? 'COMMIT' : 'ROLLBACK');
  }
}

/**
 * Has auto_explain report, on this connection, the plans of the statements inside functions and triggers.
 * A superuser loads it here; elsewhere the server preloads it and grants its settings (scripts/ci-postgres.sh).
 */
async function explainNested(c: DbClient): Promise<void> {
  await c.query(`LOAD 'auto_explain'`).catch(async (err: unknown) => {
    const { rows } = await c.query<{ v: string | null }>(
      `SELECT current_setting('auto_explain.log_min_duration', true) AS v`,
    );
    if (rows[0]?.v == null)
      throw new Error(`auto_explain is neither loadable nor preloaded: ${(err as Error).message}`);
  });
  await c.query(`SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
    SET auto_explain.log_analyze = on; SET auto_explain.log_format = json; SET auto_explain.log_level = notice`);
}

/** One call's cost within bounds: Postgres time, pages touched, and the rows any one scan read. */
function expectCheap(c: Cost, maxBuffers = MAX_BUFFERS): void {
  expect(c.ms, c.plan).toBeLessThan(MAX_MS);
  expect(c.buffers, c.plan).toBeLessThan(maxBuffers);
  expect(c.maxScanRows, c.worst).toBeLessThanOrEqual(1);
}

function exchangeCall(runner: string, done: ClaimedSession[], types: string[], slots: number, max: number) {
  const items = done.map((c) => ({ id: c.id, leaseToken: c.leaseToken, status: 'succeeded', result: {} }));
  return {
    sql: 'SELECT * FROM sfw_exchange($1, $2, $3, $4, $5, $6, NULL, NULL, NULL)',
    params: [runner, items.length ? JSON.stringify(items) : null, types, slots, max, LEASE_MS],
  };
}

beforeAll(async () => {
  ({ db } = await freshDb('claim-plans'));
  client = await db.connect();
  await explainNested(client);
  // Statistics change only when this file says so (autovacuum would otherwise analyze mid-test).
  for (const t of ['sessions', 'session_ready', 'session_scheduled', 'runner_health'])
    await db.query(`ALTER TABLE ${t} SET (autovacuum_enabled = false)`);
  await seedFinishedSessions(db, 'history', HISTORY);
  // Statistics taken now: a deep history, nothing queued, nothing running.
  await db.query('ANALYZE');
  await seedQueuedSessions(db, 'deep', OTHER_READY);
  await seedQueuedSessions(db, 'busy', RUNNING);
  for (let k = 0; k < RUNNING / 100; k++)
    await exchange(db, {
      runnerId: `busy-${k}`,
      types: ['busy'],
      slots: 100,
      maxConcurrency: 100,
      leaseMs: LEASE_MS,
    });
  // A new backend's first calls compile the functions and their triggers and read the catalogs (tens of
  // ms and ~2,000 buffers, once per connection): measured calls run on a connection past that, as pooled
  // connections are.
  await seedQueuedSessions(db, 'warm', 2);
  const warm = await exchange(client, {
    runnerId: 'warm-up',
    types: ['warm'],
    slots: 2,
    maxConcurrency: 2,
    leaseMs: LEASE_MS,
  });
  const again = exchangeCall('warm-up', warm.claimed(), ['warm'], 2, 2);
  await pgCost(again.sql, again.params, { keep: true });
}, 180_000);

afterAll(async () => {
  client?.release();
  await db?.end();
});

describe('claim and completion cost (Postgres time, not wall clock)', () => {
  it('sets no planner setting on any function (a coerced plan hides its cost until JIT meets it)', async () => {
    const { rows } = await db.query<{ proname: string }>(
      `SELECT proname FROM pg_proc WHERE proname LIKE 'sfw\\_%' AND proconfig IS NOT NULL`,
    );
    expect(rows).toEqual([]);
  });

  it('an exchange carrying 10 completions and claiming 10 costs a few ms, with 2,000 running and stale statistics', async () => {
    await seedQueuedSessions(db, 'work', 40);
    const first = await exchange(db, {
      runnerId: 'w1',
      types: ['work'],
      slots: 10,
      maxConcurrency: 20,
      leaseMs: LEASE_MS,
    });
    expect(first.claimedCount).toBe(10);
    const call = exchangeCall('w1', first.claimed(), ['work'], 10, 20);
    const cost = await pgCost(call.sql, call.params);
    expectCheap(cost);
    // The same on a connection whose plans are warm (PL/pgSQL caches them per connection).
    for (let i = 0; i < 12; i++) await pgCost(call.sql, call.params);
    const warm = await pgCost(call.sql, call.params);
    expectCheap(warm);
  });

  it('completes a batch on its own after exchanges on the same connection, as cheaply as on a fresh one', async () => {
    await seedQueuedSessions(db, 'solo', 30);
    const claimed = await exchange(db, {
      runnerId: 's1',
      types: ['solo'],
      slots: 10,
      maxConcurrency: 10,
      leaseMs: LEASE_MS,
    });
    const call = exchangeCall('s1', claimed.claimed(), ['solo'], 10, 10);
    for (let i = 0; i < 12; i++) await pgCost(call.sql, call.params);
    const items = claimed
      .claimed()
      .map((c) => ({ id: c.id, leaseToken: c.leaseToken, status: 'succeeded', result: null }));
    const cost = await pgCost('SELECT * FROM sfw_complete($1, NULL)', [JSON.stringify(items)]);
    expectCheap(cost);
  });

  it('a claim for one type costs nothing extra with 100,000 ready sessions of another type', async () => {
    await seedQueuedSessions(db, 'rare', 5);
    const call = exchangeCall('rare-1', [], ['rare'], 5, 5);
    const cost = await pgCost(call.sql, call.params);
    expectCheap(cost, 600);
    // And an idle claim (nothing ready of its types at all) as little.
    const idle = exchangeCall('idle-1', [], ['nothing-here'], 5, 5);
    const idleCost = await pgCost(idle.sql, idle.params);
    expectCheap(idleCost, 300);
  });

  it('a runner serving the deep type takes from its head, not the whole queue', async () => {
    const call = exchangeCall('deep-1', [], ['deep', 'rare', 'busy'], 10, 10);
    const cost = await pgCost(call.sql, call.params);
    expectCheap(cost);
  });

  // With no statistics of a type's rows the planner may read a few thousand of them and sort them (under
  // a millisecond: from about 4,000 rows on the index walk is cheaper by its own estimate too); what must
  // never happen is a read of the whole queue, as the 20,000 here would be.
  it('walks the claim-order index even when the statistics predate a mass release of scheduled sessions', async () => {
    const type = 'held-burst';
    await insertSessions(
      db,
      Array.from({ length: 20_000 }, (_, i) => ({ type, priority: i % 2, runAt: HELD_RUN_AT })),
    );
    // Statistics say nothing of this type is ready; then all of it becomes due at once.
    await db.query('ANALYZE');
    expect(await releaseHeldSessions(db, type)).toBe(20_000);
    const [, pick] = await explainClaim(db, 'held-burst-runner', [type]);
    expect(pick).toMatch(/Index (Only )?Scan using session_ready_claim_idx/);
    expect(pick).not.toMatch(/Seq Scan|Bitmap/);
    const call = exchangeCall('held-burst-runner', [], [type], 4, 4);
    const cost = await pgCost(call.sql, call.params, { keep: true });
    expectCheap(cost);
    const { rows } = await db.query<{ priority: number; created_at: Date }>(
      `SELECT priority, created_at FROM sessions WHERE claimed_by = 'held-burst-runner' ORDER BY created_at`,
    );
    expect(rows.map((r) => r.priority)).toEqual([1, 1, 1, 1]);
  });

  it('a claim with 10,000 queued behind a full key reads none of them once they are parked', async () => {
    await putLimit(db, 'full.example', { concurrency: 1 });
    await db.query(
      `INSERT INTO sessions (id, type, input, created_at, updated_at, run_at, concurrency_key)
       SELECT gen_random_uuid(), 'lim', '{}', t, t, t, 'full.example'
       FROM generate_series(1, 10000) g, LATERAL (SELECT now() - make_interval(secs => (10000 - g) / 1000.0 + 60) AS t) x`,
    );
    await seedQueuedSessions(db, 'lim', 200);
    await db.query('ANALYZE');
    // The first claims take the key's one slot and park the rest (2,000 a claim), taking other work meanwhile.
    let got = 0;
    for (let i = 0; i < 6; i++) {
      const out = await exchange(db, {
        runnerId: `lim-${i}`,
        types: ['lim'],
        slots: 5,
        maxConcurrency: 5,
        leaseMs: LEASE_MS,
      });
      got += out.claimedCount;
    }
    expect(got).toBe(30);
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM session_held`);
    expect(rows[0]!.n).toBe(9_999);
    const call = exchangeCall('lim-m', [], ['lim'], 5, 5);
    for (let i = 0; i < 12; i++) await pgCost(call.sql, call.params);
    expectCheap(await pgCost(call.sql, call.params));
    // And when the key's recheck comes (its held sessions looked at again, none let go: it is still full).
    await db.query(`UPDATE limits SET release_at = now() - interval '1 s' WHERE key = 'full.example'`);
    expectCheap(await pgCost(call.sql, call.params));
    // The key's running session completes: one held session goes back to the ready table, and the same
    // exchange claims it.
    const { rows: run } = await db.query<{ id: string; lease_token: string; claimed_by: string }>(
      `SELECT id, lease_token, claimed_by FROM sessions WHERE concurrency_key = 'full.example' AND status = 'running'`,
    );
    expect(run).toHaveLength(1);
    const done = exchangeCall(run[0]!.claimed_by, [], ['lim'], 5, 5);
    const item = [{ id: run[0]!.id, leaseToken: run[0]!.lease_token, status: 'succeeded', result: {} }];
    done.params[1] = JSON.stringify(item);
    expectCheap(await pgCost(done.sql, done.params));
  });

  it('stays cheap on tables never analyzed', async () => {
    const fresh = await freshDb('claim-plans-nostats');
    try {
      for (const t of ['sessions', 'session_ready', 'session_scheduled'])
        await fresh.db.query(`ALTER TABLE ${t} SET (autovacuum_enabled = false)`);
      await seedFinishedSessions(fresh.db, 'history', 50_000);
      await seedQueuedSessions(fresh.db, 'deep', 20_000);
      await seedQueuedSessions(fresh.db, 'work', 20);
      const c = await fresh.db.connect();
      try {
        const first = await exchange(c, {
          runnerId: 'n1',
          types: ['work'],
          slots: 10,
          maxConcurrency: 20,
          leaseMs: LEASE_MS,
        });
        await explainNested(c);
        const call = exchangeCall('n1', first.claimed(), ['work'], 10, 20);
        expectCheap(await pgCost(call.sql, call.params, { on: c }));
      } finally {
        c.release();
      }
    } finally {
      await fresh.db.end();
    }
  }, 120_000);
});
