import os from 'node:os';
import type { Logger } from '../core/log.js';
import { ConfigError } from '../core/errors.js';
import { DEFAULT_MAX_CONCURRENCY, DEFAULT_POLL_INTERVAL_MS } from '../core/types.js';
import { sleep } from '../core/time.js';
import type { HeartbeatReply } from '../protocol/schemas.js';
import { Admission } from './admission.js';
import { ClaimLoop } from './claim-loop.js';
import { drain, tellStopped } from './drain.js';
import { Executions } from './executions.js';
import { Heartbeat } from './heartbeat.js';
import { LiveStreams } from './live.js';
import { Outbox } from './outbox.js';
import { TypeRegistration } from './registration.js';
import { httpStatusOf, retryDelay } from './retry.js';
import type { BrowserPoolHandle, RetryPolicy, RunnerApi, RunnerOptions, RunnerState } from './types.js';

/**
 * The runner: claim sessions (claim-loop.ts), run them (executions.ts), report them (outbox.ts), renew
 * leases (heartbeat.ts), drain on stop (drain.ts). This class owns the runner's state and settings and
 * wires those parts together.
 */
export class Runner {
  readonly runnerId: string;
  private readonly log: Logger;
  private readonly client: RunnerApi;
  private readonly pool: BrowserPoolHandle | undefined;
  private readonly typeNames: string[];
  private readonly retry: RetryPolicy;
  private readonly shutdownTimeoutMs: number;
  private readonly abortGraceMs: number;
  private readonly hostname: string;
  private readonly version: string | undefined;
  private readonly admission: Admission;
  private readonly outbox: Outbox;
  private readonly executions: Executions;
  private readonly claimLoop: ClaimLoop;
  private readonly heartbeat: Heartbeat;
  private readonly live: LiveStreams | undefined;
  private readonly registration: TypeRegistration;

  private state: RunnerState = 'new';
  private startedAt = new Date().toISOString();
  private max: number;
  private pollMs: number;
  private readonly fixedMax: boolean;
  private readonly fixedPoll: boolean;

  /** Aborted when the runner starts stopping: no more claims. */
  private readonly claimStop = new AbortController();
  /** Aborted once the runner has stopped: no more heartbeats. */
  private readonly stopTimers = new AbortController();
  private readonly forceAbort = new AbortController();
  private claiming: Promise<void> = Promise.resolve();
  private loops: Promise<void>[] = [];
  private stopping: Promise<number> | undefined;

  constructor(opts: RunnerOptions) {
    this.runnerId = opts.runnerId;
    this.log = opts.log.child({ runnerId: opts.runnerId });
    this.client = opts.client;
    this.pool = opts.pool;
    this.typeNames = opts.types.map((t) => t.name);
    if (this.typeNames.length === 0) throw new Error('a runner needs at least one session type to serve');
    const browserTypes = new Set(opts.types.filter((t) => t.browser).map((t) => t.name));
    this.fixedMax = opts.maxConcurrency !== undefined;
    this.max = opts.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
    this.fixedPoll = opts.pollIntervalMs !== undefined;
    this.pollMs = opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.retry = { backoffMs: opts.backoffMs ?? 250, maxBackoffMs: opts.maxBackoffMs ?? 15_000 };
    this.shutdownTimeoutMs = opts.shutdownTimeoutMs ?? 300_000;
    this.abortGraceMs = opts.abortGraceMs ?? 15_000;
    this.hostname = opts.hostname ?? os.hostname();
    this.version = opts.version;
    this.admission = new Admission({
      browser: browserTypes.size > 0,
      ...(opts.freeMemory ? { freeMemory: opts.freeMemory } : {}),
      ...(opts.sessionBudgetBytes === undefined ? {} : { sessionBudgetBytes: opts.sessionBudgetBytes }),
      ...(opts.baseBudgetBytes === undefined ? {} : { baseBudgetBytes: opts.baseBudgetBytes }),
      log: this.log,
    });
    this.outbox = new Outbox({
      send: async (items) => (await this.client.completeMany(this.runnerId, items)).items,
      claimWillCarry: () => this.claimLoop.willCarry(),
      log: this.log,
      retry: this.retry,
    });
    this.executions = new Executions({
      executor: opts.executor,
      outbox: this.outbox,
      uploads: { client: this.client, retry: this.retry, forced: this.forceAbort.signal },
      states: {
        runnerId: this.runnerId,
        client: this.client,
        retry: this.retry,
        forced: this.forceAbort.signal,
      },
      backoffs: { runnerId: this.runnerId, client: this.client },
      log: this.log,
      browserTypes,
      hardGraceMs: opts.hardTimeoutGraceMs ?? 30_000,
      released: () => this.claimLoop.wakeSoon(),
      ended: (id) => this.live?.ended(id),
    });
    this.live = opts.liveView
      ? new LiveStreams({
          ...opts.liveView,
          runnerId: this.runnerId,
          log: this.log,
          liveOf: (id, leaseToken) => this.executions.liveOf(id, leaseToken),
        })
      : undefined;
    this.claimLoop = new ClaimLoop({
      runnerId: this.runnerId,
      client: this.client,
      log: this.log,
      outbox: this.outbox,
      executions: this.executions,
      retry: this.retry,
      running: () => this.state === 'running',
      admit: () => this.admission.admit(this.max, this.executions.browserCount),
      pollIntervalMs: () => this.pollMs,
      registration: () => ({
        types: this.typeNames,
        ...(this.fixedMax ? { maxConcurrency: this.max } : {}),
        hostname: this.hostname,
        ...(this.version ? { version: this.version } : {}),
        startedAt: this.startedAt,
      }),
      stopped: this.claimStop.signal,
      forced: this.forceAbort.signal,
    });
    this.registration = new TypeRegistration({
      runnerId: this.runnerId,
      client: this.client,
      types: opts.types,
      log: this.log,
    });
    this.heartbeat = new Heartbeat({
      runnerId: this.runnerId,
      client: this.client,
      log: this.log,
      executions: this.executions,
      admission: this.admission,
      pool: this.pool,
      intervalMs: opts.heartbeatIntervalMs ?? 5000,
      health: () => ({
        maxConcurrency: this.max,
        status: this.state === 'draining' ? 'draining' : 'running',
        hostname: this.hostname,
        ...(this.version ? { version: this.version } : {}),
        startedAt: this.startedAt,
        effectiveConcurrency: Math.min(1000, this.effectiveConcurrency()),
        types: this.typeNames,
      }),
      configured: (config) => this.configured(config),
      registration: this.registration,
      ...(this.live ? { live: this.live } : {}),
    });
  }

  get status(): RunnerState {
    return this.state;
  }

  /** Sessions this runner holds now (executing, or finished with the result not yet accepted). */
  get activeSessions(): number {
    return this.executions.heldCount;
  }

  get maxConcurrency(): number {
    return this.max;
  }

  /** Claim requests made so far (each may return 0..slots sessions). */
  get claimRequests(): number {
    return this.claimLoop.claimRequests;
  }

  /** The ceiling after memory-aware admission. */
  effectiveConcurrency(): number {
    return this.admission.effective(this.max, this.executions.browserCount);
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
    const failed = await this.heartbeat.beat();
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
    // The API checks input at enqueue against the schemas registered here (the first heartbeat of a new
    // runner has asked for them already: this joins that registration).
    await this.registration.register();
    this.claiming = this.guard('claim', () => this.claimLoop.run());
    this.loops = [this.guard('heartbeat', () => this.heartbeat.loop(this.stopTimers.signal)), this.claiming];
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

  /** scheduler_config applies where MAX_CONCURRENCY and POLL_INTERVAL_MS were not set. */
  private configured(config: HeartbeatReply['config']): void {
    if (!this.fixedMax && config.maxConcurrency !== this.max) {
      this.log.info(
        { from: this.max, to: config.maxConcurrency },
        'max concurrency changed (scheduler_config)',
      );
      this.max = config.maxConcurrency;
      this.claimLoop.wake();
    }
    if (!this.fixedPoll) this.pollMs = config.pollIntervalMs;
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
        await sleep(retryDelay(failures, this.retry), this.stopTimers.signal);
      }
    }
  }

  private async shutdown(): Promise<number> {
    if (this.state === 'new' || this.state === 'stopped') {
      this.state = 'stopped';
      return 0;
    }
    this.state = 'draining';
    this.claimStop.abort();
    this.claimLoop.wake();
    this.log.info(
      { inFlight: this.executions.runningCount, shutdownTimeoutMs: this.shutdownTimeoutMs },
      'stopping: no more claims; letting in-flight sessions finish',
    );
    await this.heartbeat.beat();
    const requeue = await drain(
      {
        executions: this.executions,
        outbox: this.outbox,
        log: this.log,
        shutdownTimeoutMs: this.shutdownTimeoutMs,
        abortGraceMs: this.abortGraceMs,
        forced: this.forceAbort.signal,
      },
      this.claiming,
    );
    // No heartbeat may land after the final status.
    this.state = 'stopped';
    this.live?.closeAll();
    this.stopTimers.abort();
    await Promise.allSettled(this.loops);
    const stopped = await tellStopped(
      {
        runnerId: this.runnerId,
        client: this.client,
        executions: this.executions,
        log: this.log,
        retry: this.retry,
      },
      requeue,
    );
    const code = stopped ? 0 : 1;
    await this.closePool();
    this.log.info({ code }, 'runner stopped');
    return code;
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
