import { lazyChild, type Logger } from '../core/log.js';
import type { ClaimedSession } from '../protocol/schemas.js';
import type { Outbox } from './outbox.js';
import { completionBody } from './reports.js';
import type { Executor, LiveSource, SessionOutcome, SessionRef } from './types.js';
import { uploadArtifact, type ArtifactUploadDeps } from './artifacts-upload.js';
import { sessionStateAccess, type StateAccessDeps } from './state-access.js';
import { backoffReporter, type BackoffReportDeps } from './backoff-report.js';

/**
 * The sessions a runner holds: each claimed session runs in the executor (abandoned as `error` when it
 * will not stop past its timeout), its outcome goes to the outbox, and the session is held until the API
 * has its report. An abort says why: a cancellation ends the session `cancelled`, a lost lease or a
 * forced stop reports nothing (the stop hands the session back).
 */

export type AbortReason = 'cancel' | 'lost' | 'shutdown' | 'timeout';

interface Running {
  session: ClaimedSession;
  controller: AbortController;
  reason: AbortReason | undefined;
  browser: boolean;
  done: Promise<void>;
  /** Its page, for live viewers, once the executor has one. */
  live: LiveSource | undefined;
}

export interface ExecutionsDeps {
  executor: Executor;
  outbox: Outbox;
  uploads: ArtifactUploadDeps;
  /** Named states through the API (state.use, state.save). */
  states: StateAccessDeps;
  /** Sites' Retry-After, reported to the API (see backoff-report.ts). */
  backoffs?: BackoffReportDeps;
  log: Logger;
  /** Session types that take a browser context (and so count against memory-aware admission). */
  browserTypes: ReadonlySet<string>;
  /** A session still running this long past its own timeout is abandoned and reported as `error`. */
  hardGraceMs: number;
  /** A session is no longer held: its slot is free. */
  released(): void;
  /** A session's execution ended (its live view, if any, ends with it). */
  ended?(sessionId: string): void;
}

export class Executions {
  /** Sessions being executed. */
  private readonly running = new Map<string, Running>();
  /** Every session this runner holds in the database (executing, or its report not yet delivered). */
  private readonly held = new Map<string, string>();

  constructor(private readonly deps: ExecutionsDeps) {}

  /** Sessions held: executing, or finished with the report not yet accepted. */
  get heldCount(): number {
    return this.held.size;
  }

  get runningCount(): number {
    return this.running.size;
  }

  /** Sessions executing now that hold a browser context. */
  get browserCount(): number {
    let n = 0;
    for (const r of this.running.values()) if (r.browser) n++;
    return n;
  }

  heldRefs(): SessionRef[] {
    return [...this.held].map(([id, leaseToken]) => ({ id, leaseToken }));
  }

  /** Settles when every session executing now has settled. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
  }

  start(session: ClaimedSession): void {
    const entry: Running = {
      session,
      controller: new AbortController(),
      reason: undefined,
      browser: this.deps.browserTypes.has(session.type),
      done: Promise.resolve(),
      live: undefined,
    };
    // The same session claimed again (its old lease lapsed while this runner was cut off, and it was
    // recovered and handed back to us): the old attempt is stale, stop it and never report it.
    const stale = this.running.get(session.id);
    if (stale) this.abort(session.id, stale.session.leaseToken, 'lost');
    this.running.set(session.id, entry);
    this.held.set(session.id, session.leaseToken);
    entry.done = this.run(entry).catch((err: unknown) => {
      this.deps.log.error(
        { sessionId: session.id, err: (err as Error).message },
        'session bookkeeping failed',
      );
      if (this.running.get(session.id) === entry) this.running.delete(session.id);
      this.release(session);
    });
  }

  /** What a live viewer of this attempt would see: undefined when it is not executing (or has no page yet). */
  liveOf(id: string, leaseToken: string): { source: LiveSource | undefined } | undefined {
    const entry = this.running.get(id);
    if (!entry || entry.session.leaseToken !== leaseToken || entry.reason !== undefined) return undefined;
    return { source: entry.live };
  }

  /** Aborts this attempt of the session (a newer attempt under another lease is left alone). */
  abort(id: string, leaseToken: string, reason: AbortReason): void {
    const entry = this.running.get(id);
    if (!entry || entry.session.leaseToken !== leaseToken || entry.reason !== undefined) return;
    entry.reason = reason;
    entry.controller.abort(new Error(reason));
  }

  /** Forced stop: every executing session is aborted and kept held, to be handed back. */
  abortAll(): void {
    for (const [id, r] of this.running) this.abort(id, r.session.leaseToken, 'shutdown');
  }

  /** The API took these back (the stop's hand-back): no longer held. */
  handedBack(refs: readonly SessionRef[]): void {
    for (const r of refs) this.held.delete(r.id);
  }

  private async run(entry: Running): Promise<void> {
    const s = entry.session;
    const log = lazyChild(this.deps.log, { sessionId: s.id, type: s.type, attempt: s.attempt });
    log.info('session started');
    const t0 = Date.now();
    const uploads: Promise<void>[] = [];
    const upload = (name: string, data: Buffer, contentType: string): Promise<void> => {
      const p = uploadArtifact(this.deps.uploads, s, { name, data, contentType }, log);
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
            errorMessage: `Session did not stop ${this.deps.hardGraceMs} ms after its ${s.timeoutMs} ms timeout; abandoned by the runner`,
          });
        }, s.timeoutMs + this.deps.hardGraceMs);
      });
      outcome = await Promise.race([
        this.deps.executor(s, {
          signal: entry.controller.signal,
          abort: (reason) => entry.controller.abort(reason),
          upload,
          state: sessionStateAccess(this.deps.states, s, log),
          log,
          ...(this.deps.backoffs ? { backoff: backoffReporter(this.deps.backoffs, s, log) } : {}),
          live: (source) => {
            entry.live = source;
          },
        }),
        hard,
      ]);
    } catch (err) {
      outcome = { status: 'error', errorMessage: (err as Error).message || String(err) };
    } finally {
      clearTimeout(hardTimer);
    }
    entry.live = undefined;
    if (this.running.get(s.id) === entry) {
      this.running.delete(s.id);
      this.deps.ended?.(s.id);
    }
    const ms = Date.now() - t0;
    switch (entry.reason) {
      case 'lost':
        log.warn({ ms }, 'session aborted: its lease was lost (recovered by the API); result not reported');
        this.release(s);
        return;
      case 'shutdown':
        // Kept held: the forced stop hands it back to the queue.
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
    const delivery = await this.deps.outbox.submit({
      sessionId: s.id,
      body,
      before: Promise.allSettled(uploads),
    });
    // Not delivered by a forced stop: still held, so the stop hands it back.
    if (delivery !== 'abandoned') this.release(s);
  }

  /** This attempt no longer holds the session (a newer attempt of the same session may). */
  private release(s: SessionRef): void {
    if (this.held.get(s.id) === s.leaseToken) this.held.delete(s.id);
    this.deps.released();
  }
}
