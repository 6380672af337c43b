import type { Logger } from '../core/log.js';
import { reapSessions } from '../store/sessions.js';
import type { Db } from '../store/db.js';

/**
 * Stale-session recovery in the API server. Every replica runs the loop; a transaction advisory lock lets
 * one at a time do the work. Lapsed leases are requeued with backoff while attempts remain, else `error`
 * with `Runner connection lost`; sessions past their own timeout plus a grace on a live runner end as `error`.
 */
export class Reaper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly intervalMs: number,
    private readonly graceMs: number,
    private readonly log?: Logger,
  ) {}

  start(): void {
    const tick = () => {
      this.running = this.runOnce()
        .then(() => undefined)
        .catch((err: unknown) =>
          this.log?.warn({ err: (err as Error).message }, 'reaper pass failed; will retry'),
        )
        .finally(() => {
          this.running = null;
          if (this.timer !== null) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  async runOnce() {
    const out = await reapSessions(this.db, this.graceMs);
    if (out && out.returned + out.requeued + out.errored + out.timedOut > 0)
      this.log?.info(out, 'recovered stale sessions');
    return out;
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }
}
