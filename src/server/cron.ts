import { Cron } from 'croner';
import { ValidationError } from '../core/errors.js';
import type { ScheduleCatchUp, ScheduleOverlap } from '../protocol/schemas.js';

/**
 * Cron expressions and fire times of schedules, computed here (Postgres cannot): five fields (minute hour
 * day-of-month month day-of-week) or six with seconds first, in an IANA time zone. Pure: the firing loop
 * and the routes call it with the database's clock.
 */

/** Most sessions one schedule makes in one pass with catchUp "all"; the rest follow on the next passes. */
export const MAX_CATCH_UP = 1000;
/**
 * A fire time at most this late when the loop sees it is on time, not missed: with catchUp "none" it
 * still makes its session (a replica's pass can be that late under load, or right after a restart).
 */
export const MISFIRE_GRACE_MS = 5000;

const CRON_HINT =
  'must be five fields (minute hour day-of-month month day-of-week) or six with seconds first, e.g. */5 * * * * or */2 * * * * *';

/** The expression as croner reads it; throws ValidationError at `at.cron` / `at.timezone`. */
export function parseCron(cron: string, timezone: string, at = 'body'): Cron {
  if (!isTimeZone(timezone))
    throw new ValidationError(`${at}.timezone`, 'must be an IANA time zone, e.g. UTC or Europe/Berlin');
  let job: Cron;
  try {
    job = new Cron(cron, { mode: '5-or-6-parts', timezone, paused: true });
  } catch (err) {
    const detail = (err as Error).message.replace(/^CronPattern: /, '');
    throw new ValidationError(`${at}.cron`, `${CRON_HINT} (${detail})`);
  }
  let next: Date | null;
  try {
    next = job.nextRun();
  } catch {
    throw new ValidationError(`${at}.timezone`, 'must be an IANA time zone, e.g. UTC or Europe/Berlin');
  }
  if (next === null) throw new ValidationError(`${at}.cron`, 'never fires: no date matches it');
  return job;
}

/** An IANA name (or UTC offset) that both Intl and croner read. */
export function isTimeZone(id: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: id });
    return true;
  } catch {
    return false;
  }
}

/** The time zone as Intl names it (europe/berlin → Europe/Berlin). */
export function canonicalTimeZone(id: string): string {
  return new Intl.DateTimeFormat('en-US', { timeZone: id }).resolvedOptions().timeZone;
}

/** The first fire time strictly after `after`, or null when there is none. */
export function nextFireTime(job: Cron, after: Date): Date | null {
  return job.nextRun(after);
}

export interface DueSchedule {
  cron: string;
  timezone: string;
  catchUp: ScheduleCatchUp;
  overlap: ScheduleOverlap;
  /** The stored next fire time, at or before now. */
  nextRunAt: Date;
  /** The schedule's latest session is not final yet (queued or running). */
  busy: boolean;
}

export interface FirePlan {
  /** Fire times to make sessions for, oldest first. */
  fire: Date[];
  /** Due fire times skipped because the previous session was not final (overlap skip). */
  skipped: number;
  /** The next fire time to store (null: the expression has none left). */
  nextRunAt: Date | null;
}

/**
 * What one pass does with a due schedule at `now`: which fire times get a session, and the next fire
 * time. Due times are those from nextRunAt to now. catchUp "all" takes each (at most MAX_CATCH_UP per pass,
 * oldest first), "latest" only the most recent, "none" the most recent only if it is within
 * MISFIRE_GRACE_MS (a short delay, not downtime). overlap "skip" makes at most one session, and none while
 * the previous one is not final.
 */
export function planFires(s: DueSchedule, now: Date, job = parseCron(s.cron, s.timezone)): FirePlan {
  let due: Date[];
  let resumeAt: Date | null = null;
  if (s.catchUp === 'all') {
    due = [];
    let t: Date | null = s.nextRunAt;
    while (t !== null && t <= now && due.length < MAX_CATCH_UP) {
      due.push(t);
      t = job.nextRun(t);
    }
    // More than one pass takes: the next pass goes on from the first time not made yet.
    if (t !== null && t <= now) resumeAt = t;
  } else {
    const latestRun = job.previousRuns(1, new Date(now.getTime() + 1))[0];
    const latest = latestRun && latestRun >= s.nextRunAt ? latestRun : s.nextRunAt;
    due = s.catchUp === 'latest' || now.getTime() - latest.getTime() <= MISFIRE_GRACE_MS ? [latest] : [];
  }
  let fire = due;
  let skipped = 0;
  if (s.overlap === 'skip') {
    fire = s.busy ? [] : due.slice(0, 1);
    skipped = due.length - fire.length;
  }
  const last = due[due.length - 1];
  const from = last && last > now ? last : now;
  return { fire, skipped, nextRunAt: resumeAt ?? job.nextRun(from) };
}
