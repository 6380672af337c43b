import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createDb, type Db } from '../../src/store/db.js';
import { ensureDatabase, startEmbeddedPostgres } from '../../src/store/embedded.js';
import { migrate } from '../../src/store/migrate.js';
import {
  analyzeSessions,
  explainExchange,
  seedFinishedSessions,
  seedQueuedSessions,
  serverInfo,
} from '../lib/seed.js';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import { exchange } from '../../src/store/sessions.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult, Row } from '../lib/report.js';
import { ratio, round, summarize, type Summary } from '../lib/stats.js';

/**
 * Part servers: Postgres' own time for one runner exchange (10 completions carried, 10 sessions claimed:
 * EXPLAIN ANALYZE of the real call, so neither the network nor the client counts), on the embedded server
 * and on the server behind BENCH_DATABASE_URL (Debian's PostgreSQL with JIT on, as users deploy it), each
 * with 10,000 and then 1,000,000 finished sessions of history. Ratios: between the servers, and 1M / 10k.
 */

const SLOTS = 10;
const LEASE_MS = 30_000;

interface Server {
  label: string;
  url: string;
  stop?: () => Promise<void>;
}

interface Measure {
  server: string;
  version: string;
  jit: string;
  history: number;
  exchange: Summary;
}

async function measure(db: Db, samples: number): Promise<Summary> {
  const c = await db.connect();
  try {
    const runner = `pgtime-${Date.now().toString(36)}`;
    let done: ClaimedSession[] = (
      await exchange(c, {
        runnerId: runner,
        types: ['noop'],
        slots: SLOTS,
        maxConcurrency: SLOTS,
        leaseMs: LEASE_MS,
      })
    ).claimed();
    // Past the connection's first calls (function compilation, catalog reads), as pooled connections are.
    for (let i = 0; i < 30; i++)
      done = (
        await explainExchange(c, { runnerId: runner, types: ['noop'], slots: SLOTS, leaseMs: LEASE_MS }, done)
      ).next;
    const ms: number[] = [];
    for (let i = 0; i < samples; i++) {
      const r = await explainExchange(
        c,
        { runnerId: runner, types: ['noop'], slots: SLOTS, leaseMs: LEASE_MS },
        done,
      );
      ms.push(r.ms);
      done = r.next;
    }
    return summarize(ms);
  } finally {
    c.release();
  }
}

export async function runServers(ctx: BenchContext): Promise<PartResult> {
  const servers: Server[] = [];
  let dir: string | undefined;
  if (process.env.BENCH_DATABASE_URL) {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-bench-servers-'));
    const embedded = await startEmbeddedPostgres(dir);
    servers.push({ label: 'embedded', url: embedded.url, stop: () => embedded.stop() });
    servers.push({ label: 'BENCH_DATABASE_URL', url: ctx.pg.adminUrl });
  } else {
    servers.push({ label: 'embedded', url: ctx.pg.adminUrl });
  }
  const small = size(ctx, 10_000, 1_000);
  const large = size(ctx, 1_000_000, 10_000);
  const samples = size(ctx, 300, 20);
  const measures: Measure[] = [];
  try {
    for (const s of servers) {
      const url = await ensureDatabase(s.url, `bench_servers_${process.pid}_${Date.now().toString(36)}`);
      const db = createDb({ connectionString: url, max: 2, applicationName: 'sfw-bench' });
      try {
        await migrate(db);
        const info = await serverInfo(db);
        const version = info.version;
        const jit = `${info.jit}${info.jitAvailable ? '' : ' (no LLVM in this build)'}`;
        await seedQueuedSessions(db, 'noop', (samples + 40) * SLOTS * 2 + 1000);
        let history = 0;
        for (const target of [small, large]) {
          ctx.log(`servers: ${s.label} (PostgreSQL ${version}), history ${target}`);
          await seedFinishedSessions(db, 'history', target - history);
          history = target;
          await analyzeSessions(db);
          measures.push({ server: s.label, version, jit, history, exchange: await measure(db, samples) });
        }
      } finally {
        await db.end();
      }
    }
  } finally {
    for (const s of servers) await s.stop?.();
    if (dir) await rm(dir, { recursive: true, force: true });
  }

  const rows: Row[] = measures.map((m) => ({
    server: `${m.server} (PostgreSQL ${m.version}, jit ${m.jit})`,
    history: m.history,
    'exchange p50 ms': round(m.exchange.p50, 3),
    'p95 ms': round(m.exchange.p95, 3),
    'max ms': round(m.exchange.max, 3),
  }));
  const ratios: Record<string, number> = {};
  const find = (server: string, history: number) =>
    measures.find((m) => m.server === server && m.history === history);
  for (const s of servers) {
    const a = find(s.label, small);
    const b = find(s.label, large);
    if (a && b)
      ratios[`${s.label}: exchange p50 at ${large} / ${small} history`] = ratio(
        b.exchange.p50,
        a.exchange.p50,
      );
  }
  if (servers.length > 1)
    for (const h of [small, large]) {
      const e = find('embedded', h);
      const x = find('BENCH_DATABASE_URL', h);
      if (e && x)
        ratios[`BENCH_DATABASE_URL / embedded: exchange p50 at ${h} history`] = ratio(
          x.exchange.p50,
          e.exchange.p50,
        );
    }
  return {
    part: 'servers',
    rows,
    ratios,
    notes: [
      `one exchange = ${SLOTS} completions carried + ${SLOTS} sessions claimed by one runner (sfw_exchange), on a warm connection`,
      "Postgres' own time: Execution + Planning Time of EXPLAIN ANALYZE around the call (with JIT on, a compiled statement's JIT time is inside it)",
      `${samples} samples per row; history = finished sessions in the table (seeded, then VACUUM ANALYZE)`,
      servers.length > 1
        ? 'both servers on this machine, measured one after the other in this run'
        : 'set BENCH_DATABASE_URL to compare with another server',
    ],
    details: { measures },
  };
}
