import type { Db } from '../store/db.js';
import type { WarnLog } from './request-log.js';
import {
  getSchedulerConfig,
  recordHeartbeats,
  type HeartbeatOutcome,
  type HeartbeatUpdate,
  type SchedulerConfigRow,
} from '../store/runners.js';

/**
 * Heartbeats, batched: the heartbeats arriving within a short window are written in one call (each
 * runner's runner_health row and the renewal of every lease they hold), so a fleet's heartbeats cost a few
 * statements a second rather than one per runner per interval. The scheduler config sent back with each
 * answer is read at most once per `configMs`.
 */

export interface HeartbeatReplyParts extends HeartbeatOutcome {
  config: SchedulerConfigRow;
}

interface Pending {
  update: HeartbeatUpdate;
  callers: { resolve: (o: HeartbeatOutcome) => void; reject: (err: unknown) => void }[];
}

export class HeartbeatBatcher {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private config: { row: SchedulerConfigRow; at: number } | null = null;
  private configRead: Promise<SchedulerConfigRow> | null = null;

  constructor(
    private readonly db: Db,
    private readonly leaseMs: number,
    private readonly windowMs = 50,
    private readonly configMs = 1000,
    private readonly log?: WarnLog,
  ) {}

  async submit(update: HeartbeatUpdate): Promise<HeartbeatReplyParts> {
    const [outcome, config] = await Promise.all([this.enqueue(update), this.schedulerConfig()]);
    return { ...outcome, config };
  }

  private enqueue(update: HeartbeatUpdate): Promise<HeartbeatOutcome> {
    return new Promise((resolve, reject) => {
      // Two heartbeats of one runner in a window: the newer one is written; both hear its outcome.
      const p = this.pending.get(update.runnerId) ?? { update, callers: [] };
      p.update = update;
      p.callers.push({ resolve, reject });
      this.pending.set(update.runnerId, p);
      this.timer ??= setTimeout(() => void this.flush(), this.windowMs);
    });
  }

  private async flush(): Promise<void> {
    this.timer = null;
    await this.flushing; // one write at a time; what arrived meanwhile goes in the next one
    const batch = this.pending;
    if (batch.size === 0) return;
    this.pending = new Map();
    const write = async () => {
      const updates = [...batch.values()].map((p) => p.update);
      try {
        return await recordHeartbeats(this.db, updates, this.leaseMs);
      } catch (err) {
        // Two batches renewing the same sessions as completions lock them: retry once.
        if ((err as { code?: string }).code !== '40P01') throw err;
        return recordHeartbeats(this.db, updates, this.leaseMs);
      }
    };
    this.flushing = write().then(
      (out) => {
        for (const [runnerId, p] of batch) {
          const o = out.get(runnerId) ?? { cancel: [], lost: [] };
          for (const c of p.callers) c.resolve(o);
        }
      },
      (err: unknown) => {
        this.log?.warn({ err: (err as Error).message, runners: batch.size }, 'heartbeat batch not written');
        for (const p of batch.values()) for (const c of p.callers) c.reject(err);
      },
    );
    await this.flushing;
    this.flushing = null;
  }

  private schedulerConfig(): Promise<SchedulerConfigRow> {
    if (this.config && Date.now() - this.config.at < this.configMs) return Promise.resolve(this.config.row);
    this.configRead ??= getSchedulerConfig(this.db)
      .then((row) => {
        this.config = { row, at: Date.now() };
        return row;
      })
      .finally(() => {
        this.configRead = null;
      });
    return this.configRead;
  }

  /** Forgets the cached scheduler config (after PUT /v1/config/scheduler on this replica). */
  configChanged(): void {
    this.config = null;
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.flush();
  }
}
