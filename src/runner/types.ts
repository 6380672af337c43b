import type { EventLog, Logger } from '../core/log.js';
import type { CompletionStatus } from '../core/types.js';
import type { SfwClient } from '../sdk/client.js';
import type { ClaimedSession, SessionTypeRegistration } from '../protocol/schemas.js';
import type { SessionStateAccess } from '../protocol/states.js';
import type { LiveFrameMeta, LiveNotice } from '../protocol/live.js';

/**
 * What the runner is given: the API client, the executor, the browser pool, its settings. All of its I/O is
 * injected, so the loop is testable without a browser.
 */

/** What the runner needs to know about a session type it serves. */
export interface ServedType {
  name: string;
  /** Needs a page (and so a Chromium); `false` types cost no browser context. */
  browser: boolean;
  /** The JSON Schema of its input, registered with the API (absent or null schema: not checked at enqueue). */
  inputJsonSchema?: Pick<SessionTypeRegistration, 'schema' | 'note'>;
  /** Its defaults (defineSession's), registered with it: the API applies them to sessions enqueued without. */
  timeoutMs?: number;
  maxAttempts?: number;
}

export interface ExecuteContext {
  signal: AbortSignal;
  /**
   * Aborts `signal` for the session's own reasons (its timeout), which the runner does not treat as a
   * cancellation: the executor's outcome stands. Saves the executor a signal of its own.
   */
  abort(reason: Error): void;
  /** Uploads an artifact under the session's lease; resolves when stored or given up (never rejects). */
  upload(name: string, data: Buffer, contentType: string): Promise<void>;
  /** The session's named state (`state.use`, `state.save`) through the API, under its lease. */
  state: SessionStateAccess;
  log: EventLog;
  /** Reports a site's Retry-After (429/503 on a navigation), so its key is left alone until then. */
  backoff?: (retryAfterMs: number, info: { status: number; url: string }) => void;
  /** What a live viewer of the session would see (its page), once there is one; undefined: none. */
  live?: (source: LiveSource | undefined) => void;
}

/** A frame of a live view: its header (the wire's LiveFrameMeta) and the JPEG. */
export interface LiveFrame {
  meta: LiveFrameMeta;
  jpeg: Buffer;
}

/** A session's page as something to watch (src/browser/live.ts); `start` answers how to stop. */
export interface LiveSource {
  start(sink: { frame(f: LiveFrame): void; notice(n: LiveNotice): void }): Promise<() => Promise<void>>;
}

export interface SessionOutcome {
  status: CompletionStatus;
  result?: unknown;
  errorMessage?: string;
}

/** Runs one claimed session to an outcome. Must settle promptly once `signal` aborts. */
export type Executor = (session: ClaimedSession, ctx: ExecuteContext) => Promise<SessionOutcome>;

/** The part of the browser pool the runner drives. */
export interface BrowserPoolHandle {
  browserMemoryBytes(): Promise<number>;
  close(): Promise<void>;
}

/**
 * The API calls a runner makes: claims (which carry completions), heartbeats, artifacts, stop; and type
 * registration, which a client may leave out (its types are then checked on the runner only).
 */
export type RunnerApi = Pick<
  SfwClient,
  'claim' | 'heartbeat' | 'completeMany' | 'uploadArtifact' | 'stopRunner'
> &
  Partial<Pick<SfwClient, 'registerTypes' | 'getSessionState' | 'saveSessionState' | 'reportBackoff'>>;

/** One attempt of a session, as every write about it names it (fencing). */
export interface SessionRef {
  id: string;
  leaseToken: string;
}

export type RunnerState = 'new' | 'running' | 'draining' | 'stopped';

/** Backoff between retries while the API is unreachable. */
export interface RetryPolicy {
  /** First delay (doubles, with jitter, up to maxBackoffMs). */
  backoffMs: number;
  maxBackoffMs: number;
}

export interface RunnerOptions {
  runnerId: string;
  client: RunnerApi;
  /** Where live views are sent (the API's address and the runner token); absent: no live view. */
  liveView?: { apiBaseUrl: string; runnerToken?: string | undefined } | undefined;
  types: readonly ServedType[];
  executor: Executor;
  pool?: BrowserPoolHandle | undefined;
  log: Logger;
  /** Fixed ceiling (MAX_CONCURRENCY); unset: follow scheduler_config.max_concurrency from heartbeat replies. */
  maxConcurrency?: number | undefined;
  /** Fixed long-poll length (POLL_INTERVAL_MS); unset: follow scheduler_config.poll_interval_ms. */
  pollIntervalMs?: number | undefined;
  heartbeatIntervalMs?: number;
  shutdownTimeoutMs?: number;
  hostname?: string;
  version?: string;
  /** Memory available to this runner now (default: the OS's available memory, container limits included). */
  freeMemory?: () => number;
  sessionBudgetBytes?: number;
  baseBudgetBytes?: number;
  /** Backoff while the API is unreachable. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** A session still running this long past its own timeout is abandoned and reported as `error`. */
  hardTimeoutGraceMs?: number;
  /** How long forced shutdown waits for aborted sessions to settle before handing them back. */
  abortGraceMs?: number;
}
