/**
 * Glossary
 * - session: one run of a browser script: type + input → result. A row in `sessions`.
 * - session type: what to run: the built-in `flow` or a code session registered with defineSession().
 * - runner: a process that claims sessions and runs them, up to its max concurrency at once.
 * - claim: the atomic move of a session from `queued` to `running`, owned by one runner, with a lease.
 * - lease: the claim's expiry, renewed by heartbeats. Every runner write about a session carries the
 *   lease token (fencing); a stale token changes nothing.
 * - attempt: one claim of a session. A session may be retried up to max_attempts.
 */

import type {
  ArtifactInfo,
  ArtifactMode,
  ArtifactOptions,
  AttemptRecord,
  CaptureMode,
  CompletionStatus,
  RunnerStatus,
  SessionStatus,
} from '@session-framework/sdk';

// The wire's domain types are the SDK's (one shape); the lists of their values live here.
export type {
  ArtifactInfo,
  ArtifactMode,
  ArtifactOptions,
  AttemptRecord,
  CaptureMode,
  CompletionStatus,
  RunnerStatus,
  SessionStatus,
};

/** Statuses a runner may report when completing a session: the final ones. */
export const COMPLETION_STATUSES = [
  'succeeded',
  'failed',
  'error',
  'cancelled',
] as const satisfies readonly CompletionStatus[];
export const TERMINAL_STATUSES: readonly SessionStatus[] = COMPLETION_STATUSES;
export const SESSION_STATUSES = [
  'queued',
  'running',
  ...COMPLETION_STATUSES,
] as const satisfies readonly SessionStatus[];

export function isTerminal(status: SessionStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

export const RUNNER_STATUSES = ['running', 'draining', 'stopped'] as const satisfies readonly RunnerStatus[];

export const ARTIFACT_MODES = ['off', 'on-failure', 'always'] as const satisfies readonly ArtifactMode[];

export const DEFAULT_ARTIFACT_OPTIONS: ArtifactOptions = { screenshot: 'on-failure', trace: 'off' };
export const CAPTURE_MODES = ['off', 'on', 'on-failure'] as const satisfies readonly CaptureMode[];
/** A session's HAR, video and downloads when its request gave none (stored only when given). */
export const DEFAULT_CAPTURE_OPTIONS = {
  har: 'off',
  video: 'off',
  downloads: false,
} as const satisfies Required<Pick<ArtifactOptions, 'har' | 'video' | 'downloads'>>;

/**
 * An artifact as the database keeps it: `file` names the upload's own folder (a fresh id per upload), so
 * an upload that loses its lease never touches a file another upload wrote. Entries without it (written
 * before uploads had their own folders) live at the session folder's top.
 */
export interface StoredArtifact extends ArtifactInfo {
  file?: string;
}

export const DEFAULT_SESSION_TIMEOUT_MS = 60_000;
/** A session's `timeoutMs` and `maxAttempts` as enqueue accepts them, and a session type's defaults. */
export const SESSION_TIMEOUT_MS_RANGE = { min: 100, max: 86_400_000 } as const;
export const MAX_ATTEMPTS_RANGE = { min: 1, max: 100 } as const;
export const DEFAULT_MAX_CONCURRENCY = 3;
export const DEFAULT_POLL_INTERVAL_MS = 5000;
/** The lease (STALE_SESSION_TIMEOUT_MS) and the runner's heartbeat, a sixth of it. */
export const DEFAULT_LEASE_MS = 30_000;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5000;
/** Error message the guide's cleanup SQL writes for sessions whose runner vanished. */
export const RUNNER_LOST_MESSAGE = 'Runner connection lost';
/** Attempt-history message of a claim whose runner never confirmed it (its answer may have been lost). */
export const UNCONFIRMED_MESSAGE =
  'Claim never confirmed by its runner (its answer may have been lost): back in the queue without spending an attempt';
