import type { Logger } from '../core/log.js';
import { sleep } from '../core/time.js';
import type { HeartbeatBody, HeartbeatReply } from '../protocol/schemas.js';
import type { Admission } from './admission.js';
import type { Executions } from './executions.js';
import type { LiveStreams } from './live.js';
import type { BrowserPoolHandle, RunnerApi } from './types.js';

/**
 * The heartbeat: every few seconds the runner tells the API its health (runner_health) and the leases it
 * holds, which renews them. The reply brings scheduler_config and the sessions to stop: cancelled by a
 * user, or lost (recovered by the API: this attempt must not report).
 */

export interface HeartbeatDeps {
  runnerId: string;
  client: Pick<RunnerApi, 'heartbeat'>;
  log: Logger;
  executions: Executions;
  admission: Admission;
  pool: BrowserPoolHandle | undefined;
  intervalMs: number;
  /** The runner's own fields of runner_health now. */
  health(): Omit<HeartbeatBody, 'activeSessions' | 'sessions' | 'memoryRssBytes' | 'browserMemoryBytes'>;
  /** scheduler_config as the API answered it. */
  configured(config: HeartbeatReply['config']): void;
  /** Type registration: asked again by the API (a fresh database), or still owed after a failure. */
  registration?: { readonly pending: boolean; register(): Promise<void> };
  /** Live views: the reply names the sessions somebody watches. */
  live?: Pick<LiveStreams, 'want'>;
}

export class Heartbeat {
  private browserMemory: number | undefined;

  constructor(private readonly deps: HeartbeatDeps) {}

  /** Beats every intervalMs until `stopped` aborts. */
  async loop(stopped: AbortSignal): Promise<void> {
    while (!stopped.aborted) {
      await sleep(this.deps.intervalMs, stopped);
      if (stopped.aborted) break;
      await this.beat();
    }
  }

  /** One heartbeat; answers the error when the API could not be told (never rejects). */
  async beat(): Promise<unknown> {
    const { executions, log } = this.deps;
    await this.measureBrowser();
    const refs = executions.heldRefs();
    const body: HeartbeatBody = {
      ...this.deps.health(),
      activeSessions: refs.length,
      sessions: refs,
      memoryRssBytes: process.memoryUsage.rss(),
      ...(this.browserMemory === undefined ? {} : { browserMemoryBytes: Math.round(this.browserMemory) }),
    };
    let reply: HeartbeatReply;
    try {
      reply = await this.deps.client.heartbeat(this.deps.runnerId, body);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'heartbeat failed; will retry');
      return err;
    }
    this.deps.configured(reply.config);
    const registration = this.deps.registration;
    if (registration && (reply.registerTypes === true || registration.pending)) void registration.register();
    // Only the attempts this heartbeat named: a session claimed again since holds another lease.
    const sent = new Map(refs.map((r) => [r.id, r.leaseToken]));
    for (const id of reply.cancel) {
      const token = sent.get(id);
      if (token) {
        log.info({ sessionId: id }, 'cancellation requested; aborting session');
        executions.abort(id, token, 'cancel');
      }
    }
    for (const id of reply.lost) {
      const token = sent.get(id);
      if (token) executions.abort(id, token, 'lost');
    }
    if (reply.live && reply.live.length > 0) this.deps.live?.want(reply.live, sent);
    return undefined;
  }

  /** Browser memory teaches admission what one browser session costs here. */
  private async measureBrowser(): Promise<void> {
    if (!this.deps.pool) return;
    try {
      const bytes = await this.deps.pool.browserMemoryBytes();
      this.browserMemory = bytes;
      this.deps.admission.observe(bytes, this.deps.executions.browserCount);
    } catch (err) {
      this.deps.log.debug({ err: (err as Error).message }, 'could not measure browser memory');
    }
  }
}
