import type { SessionStatus } from './wire.js';

/**
 * Batches: sessions followed together by a tag (`tags` at enqueue). A tag's counts by status, the export of
 * many sessions as JSON lines or CSV, and the cancel of many in one call.
 */

/** GET /v1/tags/:tag: the tag's sessions by status. */
export type TagView = {
  tag: string;
  /** Sessions carrying the tag. */
  total: number;
  /** Every status, 0 when none. */
  byStatus: Record<SessionStatus, number>;
  /** Sessions in a final status (succeeded, failed, error, cancelled). */
  finished: number;
  /** Whether every session of the tag is final (false when it has none). */
  done: boolean;
  /** Creation time of its oldest and newest session (null when it has none). */
  oldestCreatedAt: string | null;
  newestCreatedAt: string | null;
  /** When its last session finished (null: none has). */
  lastFinishedAt: string | null;
};

/** Statuses a bulk cancel may pick: only these can be cancelled. */
export const CANCELLABLE_STATUSES = ['queued', 'running'] as const;

/** POST /v1/sessions/cancel: which sessions to cancel; at least one field. All given must match. */
export type CancelSessionsBody = {
  tag?: string;
  status?: (typeof CANCELLABLE_STATUSES)[number];
  type?: string;
  /** Up to 10,000 session ids. */
  ids?: string[];
};

export type CancelSessionsReply = {
  /** Queued sessions cancelled at once. */
  cancelled: number;
  /** Running sessions asked to stop: their runners abort them at their next heartbeat. */
  requested: number;
};

export const EXPORT_FORMATS = ['jsonl', 'csv'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** GET /v1/sessions/export: every session that matches, oldest first, streamed. */
export type ExportSessionsQuery = {
  format?: ExportFormat;
  tag?: string;
  status?: SessionStatus;
  type?: string;
  /** Sessions created at or after this time (RFC 3339). */
  since?: string;
};

/** One line of a JSON lines export (a CSV export has these columns, in this order; tags joined by ;). */
export type ExportedSession = {
  id: string;
  type: string;
  status: SessionStatus;
  tags: string[];
  priority: number;
  createdAt: string;
  runAt: string;
  claimedAt: string | null;
  finishedAt: string | null;
  attempt: number;
  maxAttempts: number;
  claimedBy: string | null;
  result: unknown;
  errorMessage: string | null;
};

/** The CSV export's header, the fields of ExportedSession in order. */
export const EXPORT_COLUMNS = [
  'id',
  'type',
  'status',
  'tags',
  'priority',
  'createdAt',
  'runAt',
  'claimedAt',
  'finishedAt',
  'attempt',
  'maxAttempts',
  'claimedBy',
  'result',
  'errorMessage',
] as const satisfies readonly (keyof ExportedSession)[];
