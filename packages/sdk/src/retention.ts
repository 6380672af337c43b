/**
 * Retention: finished sessions and their artifacts are deleted some time after they finished
 * (RETENTION_MS, per final status RETENTION_<STATUS>_MS). GET /v1/retention answers the settings of the
 * API replica that answers and what retention removed so far across the fleet.
 */

/** Milliseconds after finished_at, per final status; 0: that status is kept forever. */
export type RetentionByStatus = {
  succeeded: number;
  failed: number;
  error: number;
  cancelled: number;
};

export type RetentionView = {
  retentionMs: RetentionByStatus;
  /** Sessions deleted so far, per final status (fleet-wide). */
  pruned: RetentionByStatus;
  /** Bytes of the artifacts of deleted sessions, plus those of swept orphan folders. */
  prunedArtifactBytes: number;
  /** Artifact folders removed because no session row had them. */
  orphanFolders: number;
  /** When a pass last completed on any replica (null: never). */
  lastRunAt: string | null;
};
