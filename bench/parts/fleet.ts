import { setMaxListeners } from 'node:events';
import os from 'node:os';
import pg from 'pg';
import { CONFIG_FIELDS } from '../../src/core/config.js';
import type { ClaimedSession, ClaimReply, CompleteItem, HeartbeatBody } from '../../src/protocol/schemas.js';
import { SfwClient, backoff, sleep } from '@session-framework/sdk';
import { startApiProcess, until, type BenchApi } from '../lib/env.js';
import type { BenchContext } from '../lib/context.js';
import type { PartResult, Row } from '../lib/report.js';
import { MB, commOf, parentOf, rssBytes, selfCpuSeconds, treeCpuSeconds } from '../lib/procs.js';
import { nowMs, round, summarize, type Summary } from '../lib/stats.js';

/**
 * Part `fleet`: what a fleet of idle runners costs, and how fast it wakes. N simulated runners live in this
 * one process (not N processes), each doing what `sfw runner` does over HTTP through SfwClient: a claim
 * long-poll loop (completions carried on the next claim) and a heartbeat every HEARTBEAT_INTERVAL_MS, the
 * fleet's heartbeats spread over the interval. Against one `sfw api` process, per N:
 *
 * 1. idle: no work queued for a window — Postgres transactions/s of the API's database, Postgres CPU,
 *    API CPU and RSS;
 * 2. wake: single sessions enqueued one at a time into the idle fleet, enqueue request start → the session
 *    in a simulated runner's claim answer;
 * 3. burst: many sessions enqueued at once, first claimed → all completed;
 * 4. (BENCH_FLEET_SOAK_S, largest N only) a long idle run sampling the API's RSS every 10 s.
 *
 * Environment: BENCH_FLEET_SIZES (default 10,100,1000, plus 5000 when BENCH_FLEET_MAX ≥ 5000),
 * BENCH_FLEET_IDLE_S (20), BENCH_FLEET_SETTLE_S (10), BENCH_FLEET_WAKE_SAMPLES (50),
 * BENCH_FLEET_WAKE_SPACING_MS (200), BENCH_FLEET_BURST (5000), BENCH_FLEET_SOAK_S (0: off),
 * BENCH_FLEET_CONCURRENCY (3, the runner's default max concurrency), HEARTBEAT_INTERVAL_MS (5000) and
 * POLL_INTERVAL_MS (5000: the claim's waitMs), as for `sfw runner`.
 */

const TYPE = 'noop';

function envInt(name: string, fallback: number, min = 0): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`${name} must be a whole number ≥ ${min}, got "${raw}"`);
  return n;
}

interface Settings {
  sizes: number[];
  idleS: number;
  settleS: number;
  wakeSamples: number;
  wakeSpacingMs: number;
  burst: number;
  soakS: number;
  concurrency: number;
  heartbeatMs: number;
  waitMs: number;
}

function settings(smoke: boolean): Settings {
  const max = envInt('BENCH_FLEET_MAX', 1000, 1);
  const explicit = process.env.BENCH_FLEET_SIZES;
  const sizes = smoke
    ? [10]
    : explicit
      ? explicit.split(',').map((s) => {
          const n = Number(s.trim());
          if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_FLEET_SIZES: bad size "${s}"`);
          return n;
        })
      : [10, 100, 1000, 5000].filter((n) => n <= max);
  return {
    sizes,
    idleS: smoke ? 3 : envInt('BENCH_FLEET_IDLE_S', 20, 1),
    settleS: smoke ? 1 : envInt('BENCH_FLEET_SETTLE_S', 10),
    wakeSamples: smoke ? 5 : envInt('BENCH_FLEET_WAKE_SAMPLES', 50, 1),
    wakeSpacingMs: envInt('BENCH_FLEET_WAKE_SPACING_MS', 200),
    burst: smoke ? 100 : envInt('BENCH_FLEET_BURST', 5000, 1),
    soakS: smoke ? 0 : envInt('BENCH_FLEET_SOAK_S', 0),
    concurrency: envInt('BENCH_FLEET_CONCURRENCY', 3, 1),
    heartbeatMs: envInt('HEARTBEAT_INTERVAL_MS', CONFIG_FIELDS.heartbeatIntervalMs.default, 100),
    waitMs: Math.min(60_000, envInt('POLL_INTERVAL_MS', CONFIG_FIELDS.pollIntervalMs.default, 50)),
  };
}

// ---- the simulated fleet ---------------------------------------------------------------------------

interface Counters {
  claims: number;
  emptyClaims: number;
  claimErrors: number;
  heartbeats: number;
  heartbeatErrors: number;
  received: number;
  /** Completions answered lease-lost or not-found. */
  refused: number;
}

class Fleet {
  readonly counters: Counters = {
    claims: 0,
    emptyClaims: 0,
    claimErrors: 0,
    heartbeats: 0,
    heartbeatErrors: 0,
    received: 0,
    refused: 0,
  };
  /** Runners waiting in a claim that carries no completions: the idle long-poll. */
  polling = 0;
  /** Runners that have sent their first claim. */
  started = 0;
  /** Sessions whose completion the API accepted. */
  readonly done = new Set<string>();
  lastError = '';
  /** Called with every session a claim answer brought, at the time the answer arrived. */
  onSession: (s: ClaimedSession, at: number) => void = () => {};
  /** Called after a claim answer reported accepted completions. */
  onDone: (at: number) => void = () => {};

  private stopping = false;
  private readonly ac = new AbortController();
  private readonly loops: Promise<void>[] = [];
  /** Long-polls: at most one per runner, so one connection each (and a few spare). */
  private readonly claimClient: SfwClient;
  /** Heartbeats on their own pool, so a heartbeat never queues behind a long-poll. */
  private readonly heartbeatClient: SfwClient;
  private readonly hostname = os.hostname();
  private t0 = 0;

  constructor(
    apiUrl: string,
    readonly n: number,
    private readonly s: Settings,
  ) {
    this.claimClient = new SfwClient({ baseUrl: apiUrl, retries: 0, connections: n + 8 });
    this.heartbeatClient = new SfwClient({ baseUrl: apiUrl, retries: 0, connections: n });
    // Every runner's claim and timers listen on the one stop signal.
    setMaxListeners(4 * n + 16, this.ac.signal);
  }

  start(): void {
    this.t0 = Date.now();
    // Runners join spread over one heartbeat interval, each at its own phase, as a fleet started at
    // different times would be: heartbeats, long-polls and the API's re-checks of waiting claims are
    // spread evenly over time, not synchronised into bursts.
    for (let i = 0; i < this.n; i++) this.loops.push(this.runner(i, this.phase(i)));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.ac.abort();
    await Promise.allSettled(this.loops);
    await Promise.allSettled([this.claimClient.close(), this.heartbeatClient.close()]);
  }

  private phase(i: number): number {
    return (i * this.s.heartbeatMs) / this.n;
  }

  private async runner(i: number, startDelayMs: number): Promise<void> {
    const signal = this.ac.signal;
    await sleep(startDelayMs, signal);
    if (this.stopping) return;
    const runnerId = `fleet-${this.n}-${i}`;
    const startedAt = new Date().toISOString();
    // Sessions claimed and not yet reported (id → lease token), as the runner's heartbeat lists them.
    const held = new Map<string, string>();
    const { concurrency, heartbeatMs, waitMs } = this.s;

    const heartbeat = async () => {
      const body: HeartbeatBody = {
        activeSessions: held.size,
        maxConcurrency: concurrency,
        sessions: [...held].map(([id, leaseToken]) => ({ id, leaseToken })),
        status: 'running',
        hostname: this.hostname,
        startedAt,
        memoryRssBytes: process.memoryUsage.rss(),
        effectiveConcurrency: concurrency,
      };
      try {
        await this.heartbeatClient.heartbeat(runnerId, body);
        this.counters.heartbeats++;
      } catch (err) {
        if (this.stopping) return;
        this.counters.heartbeatErrors++;
        this.lastError = `heartbeat: ${(err as Error).message}`;
      }
    };

    // The runner registers with a first heartbeat, then claims; it heartbeats again every interval.
    await heartbeat();
    const phase = this.phase(i);
    const heartbeats = (async () => {
      for (let k = 1; !this.stopping; k++) {
        const at = this.t0 + phase + k * heartbeatMs;
        if (at < Date.now()) continue; // a slot missed (slow answer): skip it, as a timer would
        await sleep(at - Date.now(), signal);
        if (this.stopping) break;
        await heartbeat();
      }
    })();

    let carry: CompleteItem[] = [];
    let failures = 0;
    this.started++;
    while (!this.stopping) {
      const carried = carry;
      const idle = carried.length === 0;
      const t0 = Date.now();
      let reply: ClaimReply;
      if (idle) this.polling++;
      try {
        reply = await this.claimClient.claim(
          runnerId,
          {
            // Finished sessions carried on this claim count as free slots.
            slots: concurrency,
            types: [TYPE],
            waitMs,
            maxConcurrency: concurrency,
            hostname: this.hostname,
            startedAt,
            ...(carried.length > 0 ? { complete: carried } : {}),
          },
          signal,
        );
      } catch (err) {
        if (this.stopping) break;
        // As the runner: back off and retry; the completions ride on the next claim (they are fenced and
        // safe to repeat).
        this.counters.claimErrors++;
        this.lastError = `claim: ${(err as Error).message}`;
        await sleep(backoff(Math.min(failures, 16), 250, 15_000), signal);
        failures++;
        continue;
      } finally {
        if (idle) this.polling--;
      }
      failures = 0;
      const at = nowMs();
      this.counters.claims++;
      let accepted = false;
      for (const c of reply.completed ?? []) {
        held.delete(c.id);
        if (c.outcome === 'accepted') {
          this.done.add(c.id);
          accepted = true;
        } else this.counters.refused++;
      }
      if (accepted) this.onDone(at);
      carry = [];
      if (reply.sessions.length === 0) this.counters.emptyClaims++;
      // A no-op session is done the moment it arrives: its completion travels with the next claim.
      for (const s of reply.sessions) {
        this.counters.received++;
        held.set(s.id, s.leaseToken);
        carry.push({ id: s.id, leaseToken: s.leaseToken, status: 'succeeded', result: {} });
        this.onSession(s, at);
      }
      // As the runner: a long-poll answered empty much sooner than it could have waited is not re-sent
      // at once, so a misbehaving server never makes the fleet spin.
      const elapsed = Date.now() - t0;
      if (reply.sessions.length === 0 && idle && elapsed < waitMs / 2) await sleep(waitMs - elapsed, signal);
    }
    await heartbeats;
  }
}

// ---- what is measured ------------------------------------------------------------------------------

/**
 * The server's postmaster, for CPU accounting: ours when embedded; for an external server, the parent of
 * the sampler's own backend when that backend is a local process (same machine, same pid namespace).
 */
async function postmasterPid(ctx: BenchContext, sampler: pg.Client): Promise<number | undefined> {
  if (ctx.pg.pid) return ctx.pg.pid;
  const { rows } = await sampler.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const backend = rows[0]?.pid;
  if (!backend || commOf(backend) !== 'postgres') return undefined;
  const parent = parentOf(backend);
  return parent && commOf(parent) === 'postgres' ? parent : undefined;
}

/** Committed + rolled-back transactions of one database, read from another one (so not counting itself). */
async function xacts(sampler: pg.Client, database: string): Promise<number> {
  const { rows } = await sampler.query<{ x: string }>(
    'SELECT (xact_commit + xact_rollback)::text AS x FROM pg_stat_database WHERE datname = $1',
    [database],
  );
  return Number(rows[0]?.x ?? Number.NaN);
}

interface Usage {
  seconds: number;
  xactPerSec: number;
  /** CPU seconds per second (1 = one core busy). */
  pgCpu: number | null;
  apiCpu: number;
  benchCpu: number;
  claimsPerSec: number;
  heartbeatsPerSec: number;
  /** Failed claims and heartbeats within the window. */
  errors: number;
  apiRssMB: number;
  apiRssMaxMB: number;
  /** Per-second samples: seconds from the start, transactions so far, API RSS MB. */
  samples: [number, number, number][];
}

async function measureUsage(
  fleet: Fleet,
  api: BenchApi,
  sampler: pg.Client,
  database: string,
  pgPid: number | undefined,
  seconds: number,
  sampleEveryS: number,
): Promise<Usage> {
  const c0 = { ...fleet.counters };
  const x0 = await xacts(sampler, database);
  const t0 = nowMs();
  const cpu0 = {
    pg: pgPid ? treeCpuSeconds(pgPid) : 0,
    api: treeCpuSeconds(api.proc.pid),
    bench: selfCpuSeconds(),
  };
  const samples: [number, number, number][] = [];
  let rssMax = 0;
  for (let k = 1; k * sampleEveryS <= seconds; k++) {
    await sleep(Math.max(0, t0 + k * sampleEveryS * 1000 - nowMs()));
    if (api.proc.child.exitCode !== null)
      throw new Error(`sfw api exited: ${api.proc.output().slice(-2000)}`);
    const rss = rssBytes(api.proc.pid) / MB;
    rssMax = Math.max(rssMax, rss);
    samples.push([round((nowMs() - t0) / 1000, 1), (await xacts(sampler, database)) - x0, round(rss, 1)]);
  }
  await sleep(Math.max(0, t0 + seconds * 1000 - nowMs()));
  const x1 = await xacts(sampler, database);
  const s = (nowMs() - t0) / 1000;
  const cpu1 = {
    pg: pgPid ? treeCpuSeconds(pgPid) : 0,
    api: treeCpuSeconds(api.proc.pid),
    bench: selfCpuSeconds(),
  };
  const rss = rssBytes(api.proc.pid) / MB;
  return {
    seconds: round(s, 2),
    xactPerSec: (x1 - x0) / s,
    pgCpu: pgPid ? (cpu1.pg - cpu0.pg) / s : null,
    apiCpu: (cpu1.api - cpu0.api) / s,
    benchCpu: (cpu1.bench - cpu0.bench) / s,
    claimsPerSec: (fleet.counters.claims - c0.claims) / s,
    heartbeatsPerSec: (fleet.counters.heartbeats - c0.heartbeats) / s,
    errors:
      fleet.counters.claimErrors - c0.claimErrors + (fleet.counters.heartbeatErrors - c0.heartbeatErrors),
    apiRssMB: rss,
    apiRssMaxMB: Math.max(rssMax, rss),
    samples,
  };
}

interface Wake {
  latency: Summary;
  enqueue: Summary;
  timeouts: number;
  /** Samples started before every runner was back in its long-poll (after a 10 s wait). */
  notIdle: number;
}

async function measureWake(fleet: Fleet, api: BenchApi, s: Settings): Promise<Wake> {
  const latencies: number[] = [];
  const enqueueMs: number[] = [];
  let timeouts = 0;
  let notIdle = 0;
  let arrived: ((ms: number) => void) | undefined;
  let current = -1;
  fleet.onSession = (session, at) => {
    const input = session.input as { wake?: number; t0?: number } | null;
    if (input?.wake === current && typeof input.t0 === 'number') arrived?.(at - input.t0);
  };
  for (let k = 0; k < s.wakeSamples; k++) {
    const idleBy = Date.now() + 10_000;
    while (fleet.polling < fleet.n && Date.now() < idleBy) await sleep(2);
    if (fleet.polling < fleet.n) notIdle++;
    // Spaced, with a little jitter so samples do not lock onto the API's 1 s re-check of waiting claims.
    await sleep(s.wakeSpacingMs + Math.random() * (s.wakeSpacingMs / 4));
    current = k;
    const got = new Promise<number>((resolve) => {
      arrived = resolve;
      setTimeout(() => resolve(Number.NaN), 30_000).unref();
    });
    const t0 = nowMs();
    await api.client.createSession({ type: TYPE, input: { wake: k, t0 } });
    enqueueMs.push(nowMs() - t0);
    const ms = await got;
    if (Number.isNaN(ms)) timeouts++;
    else latencies.push(ms);
  }
  fleet.onSession = () => {};
  // The last sample's completion rides on its runner's next claim: let it land before anything else.
  await until(() => fleet.done.size >= fleet.counters.received, 'wake sessions completed', 30_000, 5);
  const skip = Math.min(5, Math.floor(latencies.length / 10));
  return {
    latency: summarize(latencies.slice(skip)),
    enqueue: summarize(enqueueMs.slice(skip)),
    timeouts,
    notIdle,
  };
}

interface Burst {
  n: number;
  enqueueS: number;
  /** First session in a claim answer → the last completion accepted. */
  claimWindowS: number;
  perSec: number;
  /** Enqueue request start → the last completion accepted. */
  totalS: number;
  pgCpuMsPerSession: number | null;
  apiCpuMsPerSession: number;
}

async function measureBurst(
  fleet: Fleet,
  api: BenchApi,
  pgPid: number | undefined,
  n: number,
): Promise<Burst> {
  const base = fleet.done.size;
  let first = 0;
  let last = 0;
  fleet.onSession = (_s, at) => {
    if (first === 0) first = at;
  };
  fleet.onDone = (at) => {
    if (last === 0 && fleet.done.size - base >= n) last = at;
  };
  const cpu0 = { pg: pgPid ? treeCpuSeconds(pgPid) : 0, api: treeCpuSeconds(api.proc.pid) };
  const t0 = nowMs();
  // One request per 10,000 (the batch limit): the whole burst is queued at once.
  for (let done = 0; done < n; done += 10_000)
    await api.client.createSessions(
      Array.from({ length: Math.min(10_000, n - done) }, () => ({ type: TYPE })),
    );
  const enqueueS = (nowMs() - t0) / 1000;
  try {
    await until(() => last > 0, `${n} burst sessions completed by ${fleet.n} runners`, 60_000 + n * 20, 5);
  } catch (err) {
    const done = fleet.done.size - base;
    throw new Error(
      `${(err as Error).message}: ${done} done (${round(done / ((nowMs() - t0) / 1000), 1)}/s); last error: ${fleet.lastError || 'none'}`,
      { cause: err },
    );
  } finally {
    fleet.onSession = () => {};
    fleet.onDone = () => {};
  }
  const cpu1 = { pg: pgPid ? treeCpuSeconds(pgPid) : 0, api: treeCpuSeconds(api.proc.pid) };
  const claimWindowS = (last - first) / 1000;
  return {
    n,
    enqueueS: round(enqueueS, 3),
    claimWindowS: round(claimWindowS, 3),
    perSec: n / claimWindowS,
    totalS: round((last - t0) / 1000, 3),
    pgCpuMsPerSession: pgPid ? round(((cpu1.pg - cpu0.pg) * 1000) / n, 3) : null,
    apiCpuMsPerSession: round(((cpu1.api - cpu0.api) * 1000) / n, 3),
  };
}

interface Soak {
  seconds: number;
  /** Seconds from the start, API RSS MB, Postgres transactions/s since the previous sample. */
  samples: [number, number, number][];
  firstMB: number;
  lastMB: number;
  maxMB: number;
}

async function measureSoak(
  api: BenchApi,
  sampler: pg.Client,
  database: string,
  seconds: number,
  log: (s: string) => void,
): Promise<Soak> {
  const samples: [number, number, number][] = [];
  const t0 = nowMs();
  let x = await xacts(sampler, database);
  let tx = t0;
  samples.push([0, round(rssBytes(api.proc.pid) / MB, 1), 0]);
  for (let k = 1; k * 10 <= seconds; k++) {
    await sleep(Math.max(0, t0 + k * 10_000 - nowMs()));
    if (api.proc.child.exitCode !== null)
      throw new Error(`sfw api exited: ${api.proc.output().slice(-2000)}`);
    const now = nowMs();
    const x1 = await xacts(sampler, database);
    samples.push([
      round((now - t0) / 1000, 0),
      round(rssBytes(api.proc.pid) / MB, 1),
      round((x1 - x) / ((now - tx) / 1000), 1),
    ]);
    x = x1;
    tx = now;
    if (k % 6 === 0) log(`fleet: soak ${k * 10} s, API RSS ${samples[samples.length - 1]![1]} MB`);
  }
  const rss = samples.map((r) => r[1]);
  return {
    seconds: round((nowMs() - t0) / 1000, 0),
    samples,
    firstMB: rss[0]!,
    lastMB: rss[rss.length - 1]!,
    maxMB: Math.max(...rss),
  };
}

interface SizeResult {
  n: number;
  idle: Usage;
  wake: Wake;
  /** Undefined when the burst did not finish in time (burstError says how far it got). */
  burst?: Burst;
  burstError?: string;
  soak?: Soak;
  counters: Counters;
  lastError: string;
  startS: number;
  /** The end of the API's output (warnings and errors), when anything failed. */
  apiLog?: string;
}

async function measureSize(
  ctx: BenchContext,
  sampler: pg.Client,
  pgPid: number | undefined,
  n: number,
  s: Settings,
  soak: boolean,
): Promise<SizeResult> {
  const url = await ctx.pg.database(`fleet_${n}`);
  const database = new URL(url).pathname.slice(1);
  // The API as deployed, with its own defaults (the client rate limit too: runner routes are never limited).
  const api = await startApiProcess(url, {
    RATE_LIMIT_PER_SEC: String(CONFIG_FIELDS.rateLimitPerSec.default),
    RATE_LIMIT_BURST: String(CONFIG_FIELDS.rateLimitBurst.default),
  });
  const fleet = new Fleet(api.url, n, s);
  try {
    const t0 = nowMs();
    fleet.start();
    await until(
      () => fleet.started === n && fleet.polling === n,
      `${n} simulated runners in their long-poll`,
      60_000 + n * 20,
      20,
      () => `(${fleet.started} started, ${fleet.polling} polling; last error: ${fleet.lastError})`,
    );
    const startS = (nowMs() - t0) / 1000;
    ctx.log(`fleet: N=${n} polling after ${round(startS, 1)} s; settling ${s.settleS} s`);
    // Start-up transients pass and Postgres's statistics flushes (deferred up to 10 s on an idle backend)
    // reach a steady state before the window opens.
    await sleep(s.settleS * 1000);
    ctx.log(`fleet: N=${n} idle window ${s.idleS} s`);
    const idle = await measureUsage(fleet, api, sampler, database, pgPid, s.idleS, 1);
    ctx.log(
      `fleet: N=${n} idle ${round(idle.xactPerSec, 1)} xact/s; wake, ${s.wakeSamples} sessions one at a time`,
    );
    const wake = await measureWake(fleet, api, s);
    ctx.log(`fleet: N=${n} wake p50 ${wake.latency.p50} ms; burst of ${s.burst}`);
    let burst: Burst | undefined;
    let burstError: string | undefined;
    try {
      burst = await measureBurst(fleet, api, pgPid, s.burst);
      ctx.log(`fleet: N=${n} burst ${round(burst.perSec, 0)} sessions/s`);
    } catch (err) {
      // The idle and wake figures stand without it.
      burstError = (err as Error).message;
      ctx.log(`fleet: N=${n} burst failed: ${burstError}`);
    }
    let soakResult: Soak | undefined;
    if (soak && burst) {
      ctx.log(`fleet: N=${n} soak ${s.soakS} s, API RSS every 10 s`);
      soakResult = await measureSoak(api, sampler, database, s.soakS, (l) => ctx.log(l));
    }
    const failed =
      burstError !== undefined ||
      fleet.counters.claimErrors + fleet.counters.heartbeatErrors + wake.timeouts > 0;
    return {
      n,
      idle,
      wake,
      ...(burst ? { burst } : {}),
      ...(burstError ? { burstError } : {}),
      ...(soakResult ? { soak: soakResult } : {}),
      counters: { ...fleet.counters },
      lastError: fleet.lastError,
      startS: round(startS, 2),
      ...(failed ? { apiLog: api.proc.output().slice(-4000) } : {}),
    };
  } finally {
    await fleet.stop();
    await api.stop();
    // Nothing of it is needed afterwards; on an external server it would stay behind.
    await sampler
      .query(`DROP DATABASE IF EXISTS "${database.replace(/"/g, '""')}" WITH (FORCE)`)
      .catch((err: unknown) => ctx.log(`fleet: could not drop ${database}: ${(err as Error).message}`));
  }
}

export async function runFleet(ctx: BenchContext): Promise<PartResult> {
  const s = settings(ctx.smoke);
  const sampler = new pg.Client({ connectionString: ctx.pg.adminUrl, application_name: 'sfw-bench-sampler' });
  await sampler.connect();
  const rows: Row[] = [];
  const ratios: Record<string, number> = {};
  const notes: string[] = [];
  const details: Record<string, unknown> = { settings: s };
  try {
    const pgPid = await postmasterPid(ctx, sampler);
    // Settings that change what a claim costs (this session's, as the API's: PGOPTIONS reaches both).
    const { rows: set } = await sampler.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings
       WHERE name IN ('jit', 'synchronous_commit', 'fsync', 'shared_buffers', 'max_connections') ORDER BY name`,
    );
    const { rows: jit } = await sampler.query<{ ok: boolean }>('SELECT pg_jit_available() AS ok');
    set.push({ name: 'jit available', setting: String(jit[0]?.ok ?? false) });
    const pgSettings = Object.fromEntries(set.map((r) => [r.name, r.setting]));
    details.postgresSettings = pgSettings;
    notes.push(
      `Postgres ${ctx.pg.version} ${ctx.pg.pid ? '(embedded)' : '(external)'}: ${set.map((r) => `${r.name}=${r.setting}`).join(', ')}`,
    );
    if (!pgPid) notes.push('Postgres CPU not measured: the server is not a process on this machine');
    else if (!ctx.pg.pid)
      notes.push(
        `Postgres CPU: the whole external server (postmaster ${pgPid} and its processes), other databases' clients included`,
      );
    const largest = Math.max(...s.sizes);
    for (const n of s.sizes) {
      ctx.log(`fleet: N=${n} simulated runners (max concurrency ${s.concurrency}), one sfw api process`);
      let r: SizeResult;
      try {
        r = await measureSize(ctx, sampler, pgPid, n, s, s.soakS > 0 && n === largest);
      } catch (err) {
        notes.push(`N=${n} could not be measured: ${(err as Error).message.slice(0, 500)}`);
        continue;
      }
      const pct = (x: number | null) => (x === null ? null : round(x * 100, 1));
      rows.push({
        N: n,
        'idle s': r.idle.seconds,
        'PG xact/s': round(r.idle.xactPerSec, 1),
        'xact/s per runner': round(r.idle.xactPerSec / n, 3),
        'PG CPU %': pct(r.idle.pgCpu),
        'API CPU %': pct(r.idle.apiCpu),
        'API RSS MB': round(r.idle.apiRssMB, 1),
        'bench CPU %': pct(r.idle.benchCpu),
        'claims/s': round(r.idle.claimsPerSec, 1),
        'heartbeats/s': round(r.idle.heartbeatsPerSec, 1),
        'wake p50 ms': r.wake.latency.p50,
        'wake p99 ms': r.wake.latency.p99,
        'burst n': s.burst,
        'burst sessions/s': r.burst ? round(r.burst.perSec, 0) : null,
        errors: r.counters.claimErrors + r.counters.heartbeatErrors + r.wake.timeouts,
      });
      ratios[`N=${n}: idle Postgres xact/s per runner`] = round(r.idle.xactPerSec / n, 3);
      if (r.burstError) notes.push(`N=${n}: burst not measured: ${r.burstError.slice(0, 400)}`);
      if (r.wake.timeouts > 0)
        notes.push(`N=${n}: ${r.wake.timeouts} wake sample(s) not claimed within 30 s (left out)`);
      if (r.wake.notIdle > 0)
        notes.push(
          `N=${n}: ${r.wake.notIdle} wake sample(s) enqueued before every runner was back in its long-poll`,
        );
      if (r.counters.claimErrors + r.counters.heartbeatErrors > 0)
        notes.push(
          `N=${n}: ${r.counters.claimErrors} claim and ${r.counters.heartbeatErrors} heartbeat errors (${r.idle.errors} of them in the idle window); last: ${r.lastError.slice(0, 300)}`,
        );
      if (r.soak) {
        ratios[`N=${n}: soak API RSS growth MB`] = round(r.soak.lastMB - r.soak.firstMB, 1);
        notes.push(
          `N=${n} soak ${r.soak.seconds} s idle after the burst: API RSS ${r.soak.firstMB} → ${r.soak.lastMB} MB (max ${r.soak.maxMB}), sampled every 10 s`,
        );
      }
      details[`N=${n}`] = r;
    }
  } finally {
    await sampler.end();
  }
  if (rows.length === 0) throw new Error(`fleet: no size could be measured: ${notes.join('; ')}`);
  notes.push(
    `simulated runners in one process (SfwClient, one pooled connection per runner): long-poll claims (waitMs ${s.waitMs}, slots = max concurrency ${s.concurrency}, completions carried on the next claim) and a heartbeat every ${s.heartbeatMs} ms spread over the interval`,
    "PG xact/s: xact_commit + xact_rollback of the API's database in pg_stat_database over the idle window, sampled from another database (the sampler's queries are not counted); backends flush these counters at most once a second, an idle one within 10 s, hence the settle before the window",
    'CPU % is of one core (100 = one core busy); PG CPU is the postmaster and all its processes; bench CPU is this process, the whole simulated fleet',
    `wake: enqueue request start → the session in a claim answer, ${s.wakeSamples} samples ${s.wakeSpacingMs} ms apart, the first ones dropped as warm-up; p99 of a few dozen samples is about their maximum`,
    'burst: sessions/s from the first session in a claim answer to the last completion accepted (enqueue in one request, not counted)',
    `the API runs as deployed, with its defaults (Postgres pool DB_POOL_SIZE=${CONFIG_FIELDS.dbPoolSize.default}, LISTEN/NOTIFY on, client rate limit on; runner routes are never limited)`,
  );
  return { part: 'fleet', rows, ratios, notes, details };
}
