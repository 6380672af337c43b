import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../core/log.js';
import type { Db } from '../store/db.js';
import {
  FINAL_STATUSES,
  existingSessionIds,
  pruneFinishedSessions,
  recordOrphansSwept,
  recordRetentionRun,
  type FinalStatus,
} from '../store/retention.js';
import type { SessionArtifacts, SessionFolderScan } from './retention-files.js';

/** How long each final status is kept after finished_at, in ms; 0 keeps that status forever. */
export type RetentionSettings = Record<FinalStatus, number>;

/** RETENTION_MS and its per-status overrides (RETENTION_SUCCEEDED_MS…), each defaulting to RETENTION_MS. */
export function retentionSettings(cfg: {
  retentionMs: number;
  retentionSucceededMs?: number | undefined;
  retentionFailedMs?: number | undefined;
  retentionErrorMs?: number | undefined;
  retentionCancelledMs?: number | undefined;
}): RetentionSettings {
  return {
    succeeded: cfg.retentionSucceededMs ?? cfg.retentionMs,
    failed: cfg.retentionFailedMs ?? cfg.retentionMs,
    error: cfg.retentionErrorMs ?? cfg.retentionMs,
    cancelled: cfg.retentionCancelledMs ?? cfg.retentionMs,
  };
}

export interface RetentionOptions {
  settings: RetentionSettings;
  /** Pause between passes. */
  intervalMs: number;
  /** Sessions per DELETE statement (and per transaction). */
  batchSize?: number;
  /** Pause between two batches, so pruning a long backlog never hogs the database. */
  pauseMs?: number;
  /** Batches per status in one pass; the rest waits for the next pass. */
  maxBatches?: number;
  /**
   * Sessions finished more recently than this are never pruned whatever the setting (the recent failure
   * rate of the HighFailureRate alert counts them: ALERT_FAILURE_WINDOW_MS).
   */
  minAgeMs?: number;
  /** A folder with no session row is removed once it is this old. */
  orphanAgeMs?: number;
  /** Folders looked at per pass by the orphan sweep. */
  orphanStep?: number;
}

export interface RetentionPass {
  /** Another replica held the pruning lock: this pass deleted nothing. */
  skipped: boolean;
  pruned: Record<FinalStatus, number>;
  /** Ids deleted by this pass (tests check that two pruners never share one). */
  ids: string[];
  artifactBytes: number;
  orphansSwept: number;
}

export const DEFAULT_BATCH_SIZE = 1000;
export const ORPHAN_AGE_MS = 3_600_000;

/**
 * The pruning loop of every API replica (started and stopped like the reaper). A pass deletes, per final
 * status, sessions past their retention in batches of `batchSize` (one short transaction each, a pause
 * between; one replica at a time, src/store/retention.ts), then removes the artifacts of the deleted
 * sessions, after the commit: a crash in between leaves folders without a row, which the orphan sweep
 * removes once they are an hour old. Every replica sweeps (with local artifacts each has its own disk).
 */
export class Retention {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private readonly stopping = new AbortController();

  constructor(
    private readonly db: Db,
    private readonly artifacts: SessionArtifacts,
    private readonly opts: RetentionOptions,
    private readonly scan?: SessionFolderScan | undefined,
    private readonly log?: Logger | undefined,
  ) {}

  /** False when every status is kept forever and there is nothing to sweep. */
  get enabled(): boolean {
    return FINAL_STATUSES.some((s) => this.opts.settings[s] > 0);
  }

  start(): void {
    if (!this.enabled) return;
    const tick = () => {
      this.running = this.runOnce()
        .catch((err: unknown) =>
          this.log?.warn({ err: (err as Error).message }, 'retention pass failed; will retry'),
        )
        .finally(() => {
          this.running = null;
          if (this.timer !== null) this.timer = setTimeout(tick, this.opts.intervalMs);
        });
    };
    this.timer = setTimeout(tick, Math.min(this.opts.intervalMs, 5000));
  }

  async runOnce(): Promise<RetentionPass> {
    const pass: RetentionPass = {
      skipped: false,
      pruned: { succeeded: 0, failed: 0, error: 0, cancelled: 0 },
      ids: [],
      artifactBytes: 0,
      orphansSwept: 0,
    };
    const batchSize = this.opts.batchSize ?? DEFAULT_BATCH_SIZE;
    const pauseMs = this.opts.pauseMs ?? 100;
    statuses: for (const status of FINAL_STATUSES) {
      const keepMs = this.opts.settings[status];
      if (keepMs <= 0) continue;
      const olderThanMs = Math.max(keepMs, this.opts.minAgeMs ?? 0);
      for (let i = 0; i < (this.opts.maxBatches ?? 100); i++) {
        if (this.stopping.signal.aborted) break statuses;
        const batch = await pruneFinishedSessions(this.db, status, olderThanMs, batchSize);
        if (batch === null) {
          pass.skipped = true;
          break statuses;
        }
        pass.pruned[status] += batch.length;
        for (const s of batch) {
          pass.ids.push(s.id);
          pass.artifactBytes += s.bytes;
        }
        await this.removeArtifacts(batch.filter((s) => s.hasArtifacts).map((s) => s.id));
        if (batch.length < batchSize) break;
        await sleep(pauseMs, undefined, { signal: this.stopping.signal }).catch(() => undefined);
      }
    }
    if (!pass.skipped) await recordRetentionRun(this.db);
    if (pass.ids.length > 0)
      this.log?.info(
        { pruned: pass.pruned, artifactBytes: pass.artifactBytes },
        'retention deleted finished sessions',
      );
    if (this.scan && !this.stopping.signal.aborted) pass.orphansSwept = await this.sweepOrphans(this.scan);
    return pass;
  }

  /** Removes the artifacts of deleted sessions, a few at a time; a failure is left to the orphan sweep. */
  private async removeArtifacts(ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += 8) {
      await Promise.all(
        ids
          .slice(i, i + 8)
          .map((id) =>
            this.artifacts
              .deletePrefix(id)
              .catch((err: unknown) =>
                this.log?.warn(
                  { sessionId: id, err: (err as Error).message },
                  'artifacts of a pruned session not removed; the orphan sweep will',
                ),
              ),
          ),
      );
    }
  }

  /**
   * One bounded step of the walk over artifact folders: a folder whose session row is gone and that was
   * last changed more than ORPHAN_AGE_MS ago is removed. (An upload writes only for a session whose row
   * exists, so a folder without one is from a pruned or deleted session.)
   */
  private async sweepOrphans(scan: SessionFolderScan): Promise<number> {
    const { folders } = await scan.next(this.opts.orphanStep ?? 1000);
    if (folders.length === 0) return 0;
    const existing = await existingSessionIds(
      this.db,
      folders.map((f) => f.sessionId),
    );
    const before = Date.now() - (this.opts.orphanAgeMs ?? ORPHAN_AGE_MS);
    let removed = 0;
    let bytes = 0;
    for (const f of folders) {
      if (existing.has(f.sessionId) || f.modifiedAt.getTime() > before) continue;
      bytes += await scan.size(f.sessionId);
      await this.artifacts.deletePrefix(f.sessionId);
      removed++;
    }
    await recordOrphansSwept(this.db, removed, bytes);
    if (removed > 0) this.log?.info({ folders: removed, bytes }, 'removed orphan artifact folders');
    return removed;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
    await this.scan?.close();
  }
}
