import type { Logger } from '../core/log.js';
import type { ScheduleSessionTemplate } from '../protocol/schemas.js';
import type { Db } from '../store/db.js';
import {
  fireDueSchedules,
  msUntilNextDue,
  type DueScheduleRow,
  type FireDecision,
} from '../store/schedules.js';
import { planFires } from './cron.js';

/** Due schedules one pass takes; a full pass is followed at once by another. */
const PASS_LIMIT = 100;
/** The pause when every due schedule was held by another pass (another replica's, or a PATCH). */
const HELD_RETRY_MS = 50;

/**
 * The firing loop of schedules in the API server. Every replica runs it: a pass takes due schedules with
 * FOR UPDATE SKIP LOCKED, so replicas share them out, and the (schedule, fire time) key makes each fire
 * time one session whatever happens. Between passes it sleeps until the earliest next_run_at, at most
 * `maxSleepMs`, so a schedule created or changed on another replica is seen within that.
 */
export class Scheduler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly maxSleepMs = 1000,
    private readonly log?: Logger,
    /** The registered defaults of the templates' types (SessionTypes.withTypeDefaults); none: the API's. */
    private readonly withDefaults?: (
      templates: ScheduleSessionTemplate[],
    ) => Promise<ScheduleSessionTemplate[]>,
  ) {}

  start(): void {
    const tick = () => {
      this.running = this.runUntilIdle()
        .catch((err: unknown) => {
          this.log?.warn({ err: (err as Error).message }, 'schedule pass failed; will retry');
          return this.maxSleepMs;
        })
        .then((sleepMs) => {
          this.running = null;
          if (this.timer !== null) this.timer = setTimeout(tick, sleepMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  /** Fires what is due now (pass after pass while they come full); answers how long to sleep. */
  async runUntilIdle(): Promise<number> {
    for (;;) {
      const ms = await msUntilNextDue(this.db);
      if (ms === null) return this.maxSleepMs;
      if (ms > 0) return Math.min(this.maxSleepMs, Math.ceil(ms));
      const out = await this.runOnce();
      if (out.schedules === 0) return HELD_RETRY_MS;
      if (out.schedules < PASS_LIMIT || this.timer === null) return 0;
    }
  }

  /** One pass: the due schedules' sessions and next fire times, in one transaction. */
  async runOnce() {
    const out = await fireDueSchedules(
      this.db,
      (s, now) => this.decide(s, now),
      PASS_LIMIT,
      this.withDefaults,
    );
    if (out.created.length + out.skipped > 0)
      this.log?.debug(
        { schedules: out.schedules, created: out.created.length, skipped: out.skipped },
        'schedules fired',
      );
    return out;
  }

  private decide(s: DueScheduleRow, now: Date): FireDecision {
    try {
      return planFires(
        {
          cron: s.cron,
          timezone: s.timezone,
          catchUp: s.catch_up,
          overlap: s.overlap,
          nextRunAt: s.next_run_at,
          busy: s.busy,
        },
        now,
      );
    } catch (err) {
      // Stored expressions were checked when written; one that no longer parses stops firing, visibly.
      this.log?.error(
        { scheduleId: s.id, err: (err as Error).message },
        'schedule cannot be computed; it stops',
      );
      return { fire: [], skipped: 0, nextRunAt: null };
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }
}
