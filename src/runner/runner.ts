import { CompletionBatcher } from './batch-complete.js';
import os from 'node:os';
import { lazyChild, type EventLog, type Logger } from '../core/log.js';
import { DEFAULT_MAX_CONCURRENCY, DEFAULT_POLL_INTERVAL_MS, type CompletionStatus } from '../core/types.js';
import { ApiError, backoff, sleep, type SfwClient } from '../sdk/client.js';
import type { ClaimedSession, HeartbeatBody } from '../protocol/schemas.js';
import {
  DEFAULT_BASE_BUDGET_BYTES,
  DEFAULT_SESSION_BUDGET_BYTES,
  SessionBudget,
  effectiveConcurrency,
} from './admission.js';
import { ReportQueue, completionBody, httpStatusOf, isLeaseGone, isPermanentRefusal } from './reports.js';
import { ConfigError } from '../core/errors.js';

/**
 * The runner loop: claim up to its free slots by long-poll, run each session, report the result; heartbeat
 * every few seconds (renewing leases, obeying cancellations); drain on stop. All I/O is injected (the API
 * client, the executor, the browser pool, the memory probe) so the loop is testable without a browser.
 */

/** What the runner needs to know about a session type it serves. */
export interface ServedType {
  name: string;
  /** Needs a page (and so a Chromium); `false` types cost no browser context. */
  browser: boolean;
}

export interface ExecuteContext {
  signal: AbortSignal;
  /**
   * Aborts `signal` for the session's own reasons (its timeout), which the runner does not treat as a
   * cancellation: the executor's outcome stands. Saves the executor a signal of its own.
   */
  abort(reason: Error): void;
  /** Uploads an artifact under the session's lease; resolves when stored or given up (never rejects). */
  upload(name: string, data: Buffer, contentType: string): Promise<void>;
  log: EventLog;
}

export interface SessionOutcome {
  status: CompletionStatus;
  result?: unknown;
  errorMessage?: string;
}

/** Runs one claimed session to an outcome. Must settle promptly once `signal` aborts. */
export type Executor = (session: ClaimedSession, ctx: ExecuteContext) => Promise<SessionOutcome>;

/** The part of the browser pool the loop drives. */
export interface BrowserPoolHandle {
  browserMemoryBytes(): Promise<number>;
  close(): Promise<void>;
}

export type RunnerApi = Pick<
  SfwClient,
  'claim' | 'heartbeat' | 'complete' | 'completeMany' | 'uploadArtifact' | 'stopRunner'
>;

export interface RunnerOptions {
  runnerId: string;
  client: RunnerApi;
  types: readonly ServedType[];
  executor: Executor;
  pool?: BrowserPoolHandle | undefined;
  log: Logger;
  /** Fixed ceiling (MAX_CONCURRENCY); unset: follow scheduler_config.max_concurrency from heartbeat replies. */
  maxConcurrency?: number | undefined;
  /** Fixed long-poll length (POLL_INTERVAL_MS); unset: follow scheduler_config.poll_interval_ms. */
  pollIntervalMs?: number | undefined;
  heartbeatIntervalMs?: number;
  shutdownTimeoutMs?: number;
  hostname?: string;
  version?: string;
  /** Memory available to this runner now (default: the OS's available memory, container limits included). */
  freeMemory?: () => number;
  sessionBudgetBytes?: number;
  baseBudgetBytes?: number;
  /** Backoff while the API is unreachable. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** A session still running this long past its own timeout is abandoned and reported as `error`. */
  hardTimeoutGraceMs?: number;
  /** How long forced shutdown waits for aborted sessions to settle before handing them back. */
  abortGraceMs?: number;
}

type AbortReason = 'cancel' | 'lost' | 'shutdown' | 'timeout';

interface Running {
  session: ClaimedSession;
  controller: AbortController;
  reason: AbortReason | undefined;
  browser: boolean;
  done: Promise<void>;
}

/** How long a busy runner waits for more free slots before claiming (batching short sessions). */
const CLAIM_BATCH_WAIT_MS = 5;

export type RunnerState = 'new' | 'running' | 'draining' | 'stopped';

export function defaultFreeMemory(): number {
  const available = typeof process.availableMemory === 'function' ? process.availableMemory() : 0;
  return available > 0 ? available : os.freemem();
}

/** Free memory read at most every `everyMs` (reading it costs system calls; the claim loop asks often). */
export function sampledFreeMemory(read: () => number = defaultFreeMemory, everyMs = 250): () => number {
  let value = 0;
  let at = -Infinity;
  return () => {
    const now = performance.now();
    if (now - at >= everyMs) {
      value = read();
      at = now;
    }
    return value;
  };
}

const UPLOAD_ATTEMPTS = 8;

export class Runner {
  readonly runnerId: string;
  private readonly log: Logger;
  private readonly client: RunnerApi;
  private readonly executor: Executor;
  private readonly pool: BrowserPoolHandle | undefined;
  private readonly typeNames: string[];
  private readonly browserTypes: Set<string>;
  private readonly reports: ReportQueue;
  private readonly batcher: CompletionBatcher;
  /** The claim loop is waiting for free slots (not in a claim request): it can carry completions. */
  private claimIdle = false;
  private wakeScheduled = false;
  private readonly budget: SessionBudget;
  private readonly baseBudget: number;
  private readonly freeMemory: () => number;
  private readonly heartbeatMs: number;
  private readonly shutdownTimeoutMs: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly hardGraceMs: number;
  private readonly abortGraceMs: number;
  private readonly hostname: string;
  private readonly version: string | undefined;

  private state: RunnerState = 'new';
  private startedAt = new Date().toISOString();
  private max: number;
  private pollMs: number;
  private readonly fixedMax: boolean;
  private readonly fixedPoll: boolean;
  /** Sessions being executed. */
  private readonly executing = new Map<string, Running>();
  /** Every session this runner holds in the database (executing or with a result not yet delivered). */
  private readonly held = new Map<string, string>();
  private browserMemory: number | undefined;
  private lastEffective = -1;

  private readonly claimAbort = new AbortController();
  private readonly stopTimers = new AbortController();
  private readonly forceAbort = new AbortController();
  private wakeResolve: (() => void) | undefined;
  private loops: Promise<unknown>[] = [];
  private stopping: Promise<number> | undefined;
  private claims = 0;

  constructor(opts: RunnerOptions) {
    this.runnerId = opts.runnerId;
    this.log = opts.log.child({ runnerId: opts.runnerId });
    this.client = opts.client;
    this.executor = opts.executor;
    this.pool = opts.pool;
    this.typeNames = opts.types.map((t) => t.name);
    this.browserTypes = new Set(opts.types.filter((t) => t.browser).map((t) => t.name));
    this.fixedMax = opts.maxConcurrency !== undefined;
    this.max = opts.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
    this.fixedPoll = opts.pollIntervalMs !== undefined;
    this.pollMs = opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.heartbeatMs = opts.heartbeatIntervalMs ?? 5000;
    this.shutdownTimeoutMs = opts.shutdownTimeoutMs ?? 300_000;
    this.backoffMs = opts.backoffMs ?? 250;
    this.maxBackoffMs = opts.maxBackoffMs ?? 15_000;
    this.hardGraceMs = opts.hardTimeoutGraceMs ?? 30_000;
    this.abortGraceMs = opts.abortGraceMs ?? 15_000;
    this.hostname = opts.hostname ?? os.hostname();
    this.version = opts.version;
    this.freeMemory = opts.freeMemory ?? sampledFreeMemory();
    this.budget = new SessionBudget(opts.sessionBudgetBytes ?? DEFAULT_SESSION_BUDGET_BYTES);
    this.baseBudget = opts.baseBudgetBytes ?? DEFAULT_BASE_BUDGET_BYTES;
    this.batcher = new CompletionBatcher({
      completeMany: (items) => this.client.completeMany(this.runnerId, items),
      complete: (id, body) => this.client.complete(id, body),
      // While the claim loop waits for free slots, a finished session's report rides on its next claim.
      carrier: () => {
        if (this.state !== 'running' || !this.claimIdle) return false;
        this.wakeSoon();
        return true;
      },
    });
    this.reports = new ReportQueue({
      complete: (id, body) => this.batcher.complete(id, body),
      log: this.log,
      backoffMs: this.backoffMs,
      maxBackoffMs: this.maxBackoffMs,
    });
    if (this.typeNames.length === 0) throw new Error('a runner needs at least one session type to serve');
  }

  get status(): RunnerState {
    return this.state;
  }

  /** Sessions this runner holds now (executing, or finished with the result not yet accepted). */
  get activeSessions(): number {
    return this.held.size;
  }

  get maxConcurrency(): number {
    return this.max;
  }

  /** Claim requests made so far (each may return 0..slots sessions). */
  get claimRequests(): number {
    return this.claims;
  }

  /** The ceiling after memory-aware admission. */
  effectiveConcurrency(): number {
    if (this.browserTypes.size === 0) return this.max;
    let activeBrowser = 0;
    for (const r of this.executing.values()) if (r.browser) activeBrowser++;
    return effectiveConcurrency({
      maxConcurrency: this.max,
      freeMemoryBytes: this.freeMemory(),
      activeBrowserSessions: activeBrowser,
      perSessionBytes: this.budget.bytes,
      baseBytes: this.baseBudget,
    });
  }

  /** Registers with a first heartbeat, then runs the claim and heartbeat loops until stop(). */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('runner already started');
    this.state = 'running';
    this.startedAt = new Date().toISOString();
    this.log.info(
      {
        types: this.typeNames,
        maxConcurrency: this.fixedMax ? this.max : 'scheduler_config',
        pollIntervalMs: this.fixedPoll ? this.pollMs : 'scheduler_config',
      },
      'runner started',
    );
    // A wrong token or runner id will not heal by retrying: say so and stop. An API that is down might.
    const failed = await this.heartbeat();
    const status = httpStatusOf(failed);
    if (status === 401 || status === 403 || status === 400) {
      this.state = 'stopped';
      await this.closePool();
      throw new ConfigError(
        status === 400
          ? `the API refused this runner: ${(failed as Error).message}`
          : `the API refused RUNNER_TOKEN (HTTP ${status}): set RUNNER_TOKEN (--runner-token) to the API's runner token`,
      );
    }
    this.loops = [
      this.guard('heartbeat', () => this.heartbeatLoop()),
      this.guard('claim', () => this.claimLoop()),
    ];
  }

  /**
   * Graceful stop: no more claims, runner_health `draining`, in-flight sessions finish (up to the shutdown
   * timeout), then final status `stopped`. On timeout or force(), in-flight sessions are aborted and handed
   * back to the queue. Resolves with an exit code: 0 when everything finished or was handed back.
   */
  stop(): Promise<number> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  /** Second signal: abort in-flight sessions now and hand them back (starts a stop if none is running). */
  force(): Promise<number> {
    this.forceAbort.abort();
    return this.stop();
  }

  /** Keeps a loop alive through a bug in one turn: log it, back off, go on until the runner stops. */
  private async guard(name: string, loop: () => Promise<void>): Promise<void> {
    for (let failures = 0; ; failures++) {
      try {
        await loop();
        return;
      } catch (err) {
        if (this.stopTimers.signal.aborted) return;
        this.log.error(
          { loop: name, err: (err as Error).stack ?? String(err) },
          'runner loop failed; restarting it',
        );
        await sleep(
          backoff(Math.min(failures, 16), this.backoffMs, this.maxBackoffMs),
          this.stopTimers.signal,
        );
      }
    }
  }

  // ---- claim loop ----------------------------------------------------------------------------------

  private async claimLoop(): Promise<void> {
    let failures = 0;
    while (this.state === 'running') {
      const effective = this.effectiveConcurrency();
      if (effective !== this.lastEffective) {
        if (effective < this.max)
          this.log.warn(
            {
              effectiveConcurrency: effective,
              maxConcurrency: this.max,
              sessionBudgetBytes: this.budget.bytes,
            },
            'memory-aware admission: claiming fewer sessions than max concurrency',
          );
        this.lastEffective = effective;
      }
      // Finished sessions whose report is waiting count as free: their report travels with this claim.
      let slots = effective - this.held.size + this.batcher.pending;
      if (slots <= 0 && this.batcher.pending === 0) {
        await this.idle(1000);
        continue;
      }
      // A busy runner with few free slots waits a moment for more to free up, so short sessions are
      // claimed (and reported) in batches, one round trip for several, instead of one per finished session.
      const until = Date.now() + CLAIM_BATCH_WAIT_MS;
      while (
        this.state === 'running' &&
        this.held.size > this.batcher.pending &&
        slots * 2 < effective &&
        Date.now() < until
      ) {
        await this.idle(until - Date.now());
        slots = effective - this.held.size + this.batcher.pending;
      }
      if (this.state !== 'running') break;
      const carried = slots > 0 || this.batcher.pending > 0 ? this.batcher.take() : undefined;
      if (slots <= 0 && !carried) continue;
      const waitMs = Math.min(60_000, this.pollMs);
      const t0 = Date.now();
      let sessions: ClaimedSession[];
      try {
        this.claims++;
        const reply = await this.client.claim(
          this.runnerId,
          {
            slots: Math.max(0, slots),
            types: this.typeNames,
            waitMs,
            ...(this.fixedMax ? { maxConcurrency: this.max } : {}),
            hostname: this.hostname,
            ...(this.version ? { version: this.version } : {}),
            startedAt: this.startedAt,
            ...(carried ? { complete: carried.items } : {}),
          },
          // Not aborted by a graceful stop: a claim the API already answered must reach us, or its
          // sessions would wait out their lease. Only a forced stop cuts it short.
          this.forceAbort.signal,
        );
        carried?.settle(reply.completed ?? []);
        sessions = reply.sessions;
        if (failures > 0) this.log.info({ failures }, 'API reachable again; claiming');
        failures = 0;
      } catch (err) {
        carried?.fail(err);
        if (this.state !== 'running') break;
        // A completion the API refused (too large, malformed) sank the claim: the completions go on their
        // own (the report queue deals with the refusal) and the claim is asked again at once.
        if (carried && err instanceof ApiError && (err.httpStatus === 400 || err.httpStatus === 413))
          continue;
        const delay = backoff(Math.min(failures, 16), this.backoffMs, this.maxBackoffMs);
        failures++;
        const msg = (err as Error).message;
        if (isPermanentRefusal(err))
          this.log.error({ err: msg, retryInMs: delay }, 'claim refused by the API (check RUNNER_TOKEN)');
        else this.log.warn({ err: msg, retryInMs: delay, failures }, 'claim failed; retrying');
        await sleep(delay, this.claimAbort.signal);
        continue;
      }
      for (const s of sessions) this.startSession(s);
      // The long-poll waited server-side; poll again at once. Guard against a server that answers empty
      // without waiting, so an idle runner never spins.
      // (A claim that carried completions is answered at once by design.)
      const elapsed = Date.now() - t0;
      if (sessions.length === 0 && !carried && elapsed < waitMs / 2) await this.idle(waitMs - elapsed);
    }
  }

  private wake(): void {
    const r = this.wakeResolve;
    this.wakeResolve = undefined;
    r?.();
  }

  /**
   * Wakes the claim loop once after the current burst: sessions of one claim finish and are released
   * together, and the loop should look at free slots and waiting reports once, not once per session.
   */
  private wakeSoon(): void {
    if (this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      this.wake();
    });
  }

  /** The claim loop waits for a wake (a slot freed, a report queued) or `ms`; meanwhile it carries reports. */
  private async idle(ms: number): Promise<void> {
    this.claimIdle = true;
    try {
      await this.waitForWake(ms);
    } finally {
      this.claimIdle = false;
    }
  }

  private waitForWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const prev = this.wakeResolve;
      this.wakeResolve = done;
      function done() {
        clearTimeout(t);
        prev?.();
        resolve();
      }
    });
  }

  // ---- sessions ------------------------------------------------------------------------------------

  private startSession(session: ClaimedSession): void {
    const entry: Running = {
      session,
      controller: new AbortController(),
      reason: undefined,
      browser: this.browserTypes.has(session.type),
      done: Promise.resolve(),
    };
    // The same session claimed again (its old lease lapsed while this runner was cut off, and it was
    // recovered and handed back to us): the old attempt is stale, stop it and never report it.
    const stale = this.executing.get(session.id);
    if (stale) this.abortSession(session.id, stale.session.leaseToken, 'lost');
    this.executing.set(session.id, entry);
    this.held.set(session.id, session.leaseToken);
    entry.done = this.runSession(entry).catch((err: unknown) => {
      this.log.error({ sessionId: session.id, err: (err as Error).message }, 'session bookkeeping failed');
      if (this.executing.get(session.id) === entry) this.executing.delete(session.id);
      this.release(session.id, session.leaseToken);
    });
  }

  private abortSession(id: string, leaseToken: string, reason: AbortReason): void {
    const entry = this.executing.get(id);
    if (!entry || entry.session.leaseToken !== leaseToken || entry.reason !== undefined) return;
    entry.reason = reason;
    entry.controller.abort(new Error(reason));
  }

  private async runSession(entry: Running): Promise<void> {
    const s = entry.session;
    const log = lazyChild(this.log, { sessionId: s.id, type: s.type, attempt: s.attempt });
    log.info('session started');
    const t0 = Date.now();
    const uploads: Promise<void>[] = [];
    const upload = (name: string, data: Buffer, contentType: string): Promise<void> => {
      const p = this.upload(entry, name, data, contentType, log);
      uploads.push(p);
      return p;
    };
    let outcome: SessionOutcome;
    let hardTimer: NodeJS.Timeout | undefined;
    try {
      const hard = new Promise<SessionOutcome>((resolve) => {
        hardTimer = setTimeout(() => {
          entry.reason ??= 'timeout';
          entry.controller.abort(new Error('timeout'));
          resolve({
            status: 'error',
            errorMessage: `Session did not stop ${this.hardGraceMs} ms after its ${s.timeoutMs} ms timeout; abandoned by the runner`,
          });
        }, s.timeoutMs + this.hardGraceMs);
      });
      outcome = await Promise.race([
        this.executor(s, {
          signal: entry.controller.signal,
          abort: (reason) => entry.controller.abort(reason),
          upload,
          log,
        }),
        hard,
      ]);
    } catch (err) {
      outcome = { status: 'error', errorMessage: (err as Error).message || String(err) };
    } finally {
      clearTimeout(hardTimer);
    }
    if (this.executing.get(s.id) === entry) this.executing.delete(s.id);
    const ms = Date.now() - t0;
    switch (entry.reason) {
      case 'lost':
        log.warn({ ms }, 'session aborted: its lease was lost (recovered by the API); result not reported');
        this.release(s.id, s.leaseToken);
        return;
      case 'shutdown':
        // Kept in `held`: the forced shutdown hands it back to the queue.
        log.warn({ ms }, 'session aborted by shutdown; will be handed back to the queue');
        return;
      case 'cancel':
        outcome = {
          status: 'cancelled',
          errorMessage: 'Cancelled by request',
          ...(outcome.result === undefined ? {} : { result: outcome.result }),
        };
        break;
      default:
        break;
    }
    const { body, replaced } = completionBody(s.leaseToken, outcome);
    if (replaced > 0)
      log.warn({ replaced }, 'characters Postgres cannot store replaced with U+FFFD in the result');
    log.info(
      { status: body.status, ms, ...(body.errorMessage ? { error: body.errorMessage } : {}) },
      'session finished',
    );
    const result = await this.reports.submit({
      sessionId: s.id,
      body,
      before: Promise.allSettled(uploads),
    });
    if (result !== 'abandoned') this.release(s.id, s.leaseToken);
  }

  /** This attempt no longer holds the session (a newer attempt of the same session may). */
  private release(id: string, leaseToken: string): void {
    if (this.held.get(id) === leaseToken) this.held.delete(id);
    this.wakeSoon();
  }

  private async upload(
    entry: Running,
    name: string,
    data: Buffer,
    contentType: string,
    log: EventLog,
  ): Promise<void> {
    const s = entry.session;
    for (let attempt = 0; attempt < UPLOAD_ATTEMPTS; attempt++) {
      try {
        await this.client.uploadArtifact(s.id, name, s.leaseToken, data, contentType);
        return;
      } catch (err) {
        const msg = (err as Error).message;
        if (isLeaseGone(err)) {
          log.warn({ artifact: name, err: msg }, 'artifact refused: lease lost');
          return;
        }
        if (isPermanentRefusal(err) || attempt === UPLOAD_ATTEMPTS - 1) {
          log.error({ artifact: name, bytes: data.length, err: msg }, 'artifact not uploaded');
          return;
        }
        await sleep(backoff(attempt, this.backoffMs, this.maxBackoffMs), this.forceAbort.signal);
        if (this.forceAbort.signal.aborted) return;
      }
    }
  }

  // ---- heartbeat -----------------------------------------------------------------------------------

  private async heartbeatLoop(): Promise<void> {
    const stopped = this.stopTimers.signal;
    while (!stopped.aborted) {
      await sleep(this.heartbeatMs, stopped);
      if (stopped.aborted) break;
      await this.heartbeat();
    }
  }

  private async measureBrowser(): Promise<void> {
    if (!this.pool) return;
    try {
      const bytes = await this.pool.browserMemoryBytes();
      this.browserMemory = bytes;
      let activeBrowser = 0;
      for (const r of this.executing.values()) if (r.browser) activeBrowser++;
      this.budget.observe(bytes, activeBrowser);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'could not measure browser memory');
    }
  }

  /** One heartbeat: reports health, renews leases, applies scheduler config, obeys cancel and lost. */
  private async heartbeat(): Promise<unknown> {
    await this.measureBrowser();
    const refs = [...this.held].map(([id, leaseToken]) => ({ id, leaseToken }));
    const effective = this.effectiveConcurrency();
    const body: HeartbeatBody = {
      activeSessions: this.held.size,
      maxConcurrency: this.max,
      sessions: refs,
      status: this.state === 'draining' ? 'draining' : 'running',
      hostname: this.hostname,
      ...(this.version ? { version: this.version } : {}),
      startedAt: this.startedAt,
      memoryRssBytes: process.memoryUsage.rss(),
      ...(this.browserMemory === undefined ? {} : { browserMemoryBytes: Math.round(this.browserMemory) }),
      effectiveConcurrency: Math.min(1000, effective),
    };
    let reply;
    try {
      reply = await this.client.heartbeat(this.runnerId, body);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'heartbeat failed; will retry');
      return err;
    }
    if (!this.fixedMax && reply.config.maxConcurrency !== this.max) {
      this.log.info(
        { from: this.max, to: reply.config.maxConcurrency },
        'max concurrency changed (scheduler_config)',
      );
      this.max = reply.config.maxConcurrency;
      this.wake();
    }
    if (!this.fixedPoll && reply.config.pollIntervalMs !== this.pollMs)
      this.pollMs = reply.config.pollIntervalMs;
    const sent = new Map(refs.map((r) => [r.id, r.leaseToken]));
    for (const id of reply.cancel) {
      const token = sent.get(id);
      if (token) {
        this.log.info({ sessionId: id }, 'cancellation requested; aborting session');
        this.abortSession(id, token, 'cancel');
      }
    }
    for (const id of reply.lost) {
      const token = sent.get(id);
      if (token) this.abortSession(id, token, 'lost');
    }
  }

  // ---- shutdown ------------------------------------------------------------------------------------

  private async shutdown(): Promise<number> {
    if (this.state === 'new' || this.state === 'stopped') {
      this.state = 'stopped';
      return 0;
    }
    this.state = 'draining';
    this.claimAbort.abort();
    this.wake();
    this.log.info(
      { inFlight: this.executing.size, shutdownTimeoutMs: this.shutdownTimeoutMs },
      'stopping: no more claims; letting in-flight sessions finish',
    );
    await this.heartbeat();
    // Let a claim in flight come back (at most its long-poll): what it brings is run and drained too.
    const claimLoop = this.loops[1];
    if (claimLoop) {
      const waitClaim = new AbortController();
      this.forceAbort.signal.addEventListener('abort', () => waitClaim.abort(), { once: true });
      await Promise.race([claimLoop, sleep(this.shutdownTimeoutMs, waitClaim.signal)]);
      waitClaim.abort();
    }

    const drained = this.drain();
    const timers = new AbortController();
    if (this.forceAbort.signal.aborted) timers.abort();
    else this.forceAbort.signal.addEventListener('abort', () => timers.abort(), { once: true });
    const timeout = sleep(this.shutdownTimeoutMs, timers.signal).then(() => false);
    const finished = await Promise.race([drained.then(() => true), timeout]);
    timers.abort();
    let requeue: { id: string; leaseToken: string }[] = [];
    if (!finished) {
      this.log.warn(
        { inFlight: this.executing.size, forced: this.forceAbort.signal.aborted },
        'aborting in-flight sessions and handing them back to the queue',
      );
      for (const [id, r] of this.executing) this.abortSession(id, r.session.leaseToken, 'shutdown');
      const grace = new AbortController();
      await Promise.race([
        Promise.allSettled([...this.executing.values()].map((r) => r.done)),
        sleep(this.abortGraceMs, grace.signal),
      ]);
      grace.abort();
      this.reports.abandon();
      requeue = [...this.held].map(([id, leaseToken]) => ({ id, leaseToken }));
    }
    // No heartbeat may land after the final status.
    this.state = 'stopped';
    this.stopTimers.abort();
    await Promise.allSettled(this.loops);
    const code = (await this.tellStopped(requeue)) ? 0 : 1;
    await this.closePool();
    this.log.info({ code }, 'runner stopped');
    return code;
  }

  private async drain(): Promise<void> {
    while (this.executing.size > 0 || this.reports.size > 0) {
      await Promise.allSettled([...this.executing.values()].map((r) => r.done));
      await this.reports.drain();
    }
  }

  /** Final status to the API (`stopped`), handing back `requeue`; a few retries. */
  private async tellStopped(requeue: { id: string; leaseToken: string }[]): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const { requeued } = await this.client.stopRunner(this.runnerId, requeue.length ? { requeue } : {});
        if (requeue.length > 0) this.log.info({ requeued }, 'in-flight sessions handed back to the queue');
        for (const r of requeue) this.held.delete(r.id);
        return true;
      } catch (err) {
        this.log.warn(
          { err: (err as Error).message, attempt: attempt + 1 },
          'could not report the final status',
        );
        await sleep(backoff(attempt, this.backoffMs, 2000));
      }
    }
    if (requeue.length > 0)
      this.log.error(
        { sessions: requeue.map((r) => r.id) },
        'API unreachable at shutdown: sessions still held will be recovered when their leases lapse',
      );
    else this.log.error('API unreachable at shutdown: final status not reported');
    return false;
  }

  private async closePool(): Promise<void> {
    if (!this.pool) return;
    try {
      await this.pool.close();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'closing the browser pool failed');
    }
  }
}
