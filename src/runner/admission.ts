import os from 'node:os';
import type { Logger } from '../core/log.js';

/**
 * Memory-aware admission: how many sessions a runner may hold at once given the memory left on its
 * machine. Budgets start from the guide (~500 MB per concurrent session plus 500 MB base overhead) and
 * the per-session budget is then learned from measured Chromium memory per active browser session.
 * Pure functions, a small learner, and the runner's admission built from them.
 */

export const MB = 1024 * 1024;
/** The guide: "Allocate ~500MB per concurrent session plus 500MB base overhead." */
export const DEFAULT_SESSION_BUDGET_BYTES = 500 * MB;
export const DEFAULT_BASE_BUDGET_BYTES = 500 * MB;
/** A learned budget never drops under this (measurement noise on an almost idle browser). */
export const MIN_SESSION_BUDGET_BYTES = 64 * MB;
/** Measured use is multiplied by this to leave headroom for heavier pages. */
export const SAFETY_FACTOR = 1.5;
/** Weight of the newest sample in the moving average. */
export const EWMA_ALPHA = 0.3;

export interface AdmissionInput {
  /** Configured ceiling (MAX_CONCURRENCY or scheduler_config.max_concurrency). */
  maxConcurrency: number;
  /** Memory available on the machine (or in the container) now. */
  freeMemoryBytes: number;
  /** Browser sessions running now: their memory is already taken out of freeMemoryBytes. */
  activeBrowserSessions: number;
  perSessionBytes: number;
  baseBytes: number;
}

/**
 * effective = min(max, floor((idle free memory − base) / per-session)), where idle free memory is what
 * would be free with no session running. Never below 1 while idle memory allows one session at all.
 */
export function effectiveConcurrency(a: AdmissionInput): number {
  const per = Math.max(1, a.perSessionBytes);
  const idleFree = Math.max(0, a.freeMemoryBytes) + Math.max(0, a.activeBrowserSessions) * per;
  const byMemory = Math.floor((idleFree - a.baseBytes) / per);
  const floor = idleFree >= per ? 1 : 0;
  return Math.max(0, Math.min(a.maxConcurrency, Math.max(byMemory, floor)));
}

/** Learns the per-session budget from measured browser memory (EWMA of bytes per active browser session). */
export class SessionBudget {
  private average: number | undefined;

  constructor(
    private readonly initialBytes: number = DEFAULT_SESSION_BUDGET_BYTES,
    private readonly alpha: number = EWMA_ALPHA,
  ) {}

  /** One measurement: the browser's total memory (PSS) while `activeBrowserSessions` ran in it. */
  observe(browserMemoryBytes: number, activeBrowserSessions: number): void {
    if (activeBrowserSessions <= 0 || !(browserMemoryBytes > 0)) return;
    const sample = browserMemoryBytes / activeBrowserSessions;
    this.average =
      this.average === undefined ? sample : this.alpha * sample + (1 - this.alpha) * this.average;
  }

  /** Samples seen so far (undefined before the first). */
  get measuredBytes(): number | undefined {
    return this.average;
  }

  /** The budget to admit with: the guide's default until measured, then measured use with headroom. */
  get bytes(): number {
    if (this.average === undefined) return this.initialBytes;
    return Math.max(MIN_SESSION_BUDGET_BYTES, Math.round(this.average * SAFETY_FACTOR));
  }
}

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

export interface AdmissionOptions {
  /** The runner serves a session type that needs a browser: only then does memory limit it. */
  browser: boolean;
  freeMemory?: () => number;
  sessionBudgetBytes?: number;
  baseBudgetBytes?: number;
  log: Logger;
}

/** One runner's admission: its ceiling after memory, with the budget learned from its own browser. */
export class Admission {
  private readonly budget: SessionBudget;
  private readonly freeMemory: () => number;
  private readonly baseBytes: number;
  private last = -1;

  constructor(private readonly opts: AdmissionOptions) {
    this.budget = new SessionBudget(opts.sessionBudgetBytes ?? DEFAULT_SESSION_BUDGET_BYTES);
    this.freeMemory = opts.freeMemory ?? sampledFreeMemory();
    this.baseBytes = opts.baseBudgetBytes ?? DEFAULT_BASE_BUDGET_BYTES;
  }

  /** The ceiling now, given `maxConcurrency` and the browser sessions running. */
  effective(maxConcurrency: number, activeBrowserSessions: number): number {
    if (!this.opts.browser) return maxConcurrency;
    return effectiveConcurrency({
      maxConcurrency,
      freeMemoryBytes: this.freeMemory(),
      activeBrowserSessions,
      perSessionBytes: this.budget.bytes,
      baseBytes: this.baseBytes,
    });
  }

  /** effective(), said in the log when memory holds it under maxConcurrency (once per change). */
  admit(maxConcurrency: number, activeBrowserSessions: number): number {
    const effective = this.effective(maxConcurrency, activeBrowserSessions);
    if (effective !== this.last) {
      if (effective < maxConcurrency)
        this.opts.log.warn(
          { effectiveConcurrency: effective, maxConcurrency, sessionBudgetBytes: this.budget.bytes },
          'memory-aware admission: claiming fewer sessions than max concurrency',
        );
      this.last = effective;
    }
    return effective;
  }

  /** One measurement of the browser's memory while `activeBrowserSessions` ran in it. */
  observe(browserMemoryBytes: number, activeBrowserSessions: number): void {
    this.budget.observe(browserMemoryBytes, activeBrowserSessions);
  }
}
