/**
 * Request and answer bodies of API v1, as JSON carries them. The server validates requests with JSON
 * schemas that the compiler holds to these types (session-framework's src/protocol/schemas.ts), so this
 * file is the one statement of each shape.
 *
 * Glossary
 * - session: one run of a browser script: type + input → result.
 * - runner: a process that claims sessions and runs them, up to its max concurrency at once.
 * - claim: the move of a session from `queued` to `running`, owned by one runner, with a lease.
 * - lease: the claim's expiry, renewed by heartbeats; every runner write carries its lease token.
 * - attempt: one claim of a session; a session may be retried up to maxAttempts.
 *
 * Times are RFC 3339 strings (UTC, milliseconds, `Z`); durations are milliseconds. The shapes are type
 * aliases, not interfaces, so that like the JSON they describe they are assignable to Record<string, unknown>.
 */

import type { StateOptions, StateSaveOutcome } from './states.js';

export type SessionStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'error' | 'cancelled';
/** Statuses a runner may report when completing a session. */
export type CompletionStatus = 'succeeded' | 'failed' | 'error' | 'cancelled';
export type RunnerStatus = 'running' | 'draining' | 'stopped';
export type ArtifactMode = 'off' | 'on-failure' | 'always';
/** When a capture (HAR, video) is kept: never, always, or only when the session did not succeed. */
export type CaptureMode = 'off' | 'on' | 'on-failure';

/**
 * What the runner records about a session, chosen at enqueue. `har`, `video` and `downloads` are absent
 * when the request left them out (off; docs/operations.md, "Capture").
 */
export type ArtifactOptions = {
  screenshot: ArtifactMode;
  trace: ArtifactMode;
  /** A HAR of the session's requests (`session.har`). */
  har?: CaptureMode;
  /** A video of the session's page (`video.webm`). */
  video?: CaptureMode;
  /** Files the page downloaded, as `download-<n>-<name>` artifacts. */
  downloads?: boolean;
};

export type ArtifactInfo = {
  name: string;
  size: number;
  contentType: string;
};

export type AttemptRecord = {
  attempt: number;
  runnerId: string | null;
  status: SessionStatus;
  errorMessage: string | null;
  startedAt: string | null;
  finishedAt: string;
};

// ---- clients ---------------------------------------------------------------------------------------

/** Options of a browser session's context (Playwright's newContext options of the same names). */
export type BrowserOptions = {
  /** Window size in CSS pixels, 100 to 10000 each. */
  viewport?: { width: number; height: number };
  /** e.g. en-GB: navigator.language and Accept-Language. */
  locale?: string;
  /** An IANA time zone, e.g. Europe/Berlin. */
  timezoneId?: string;
  userAgent?: string;
  /** Sent with every request of the session. */
  extraHTTPHeaders?: Record<string, string>;
  /** Refused at enqueue for now: the runner's egress policy is the browser's only way out. */
  proxy?: { server: string; username?: string; password?: string };
  javaScriptEnabled?: boolean;
};

export type CreateSessionBody = {
  /** `flow` or a registered code session type. */
  type: string;
  input?: unknown;
  /** Higher first; FIFO within a priority (-1000 to 1000, default 0). */
  priority?: number;
  /** Not before this time. */
  runAt?: string;
  timeoutMs?: number;
  maxAttempts?: number;
  /** Outcomes that spend another attempt (default: error). */
  retryOn?: ('error' | 'failed')[];
  artifacts?: {
    screenshot?: ArtifactMode;
    trace?: ArtifactMode;
    har?: CaptureMode;
    video?: CaptureMode;
    downloads?: boolean;
  };
  /** Options of a browser session's context. */
  browser?: BrowserOptions;
  /** The named state the session's context starts from and/or is saved under (browser sessions). */
  state?: StateOptions;
  /** A repeat with the same key answers the same session. */
  /** Repeat-safe key: the same request under it answers the same session; a different one is 409 CONFLICT. */
  idempotencyKey?: string;
  /**
   * The key its per-key limits count it under (PUT /v1/limits/:key; up to 200 characters). A flow's
   * default is the host of its first goto.
   */
  concurrencyKey?: string;
  /**
   * Labels to follow a batch by (GET /v1/tags/:tag, ?tag=, export, bulk cancel): up to 20, each 1 to 64
   * characters of letters, digits and . _ : / = @ + -, starting with a letter or digit.
   */
  tags?: string[];
};

export type BatchBody = {
  sessions: CreateSessionBody[];
};

/** The answer to an enqueue: the session, and what the API could not check (a type no runner registered). */
export type CreatedSession = Flat<SessionView & { warnings?: string[] }>;

export type BatchReply = {
  items: SessionView[];
  /** What the API could not check, once per type (e.g. a type no runner has registered). */
  warnings?: string[];
};

export type SessionView = {
  id: string;
  type: string;
  input: unknown;
  status: SessionStatus;
  priority: number;
  createdAt: string;
  updatedAt: string;
  runAt: string;
  claimedBy: string | null;
  claimedAt: string | null;
  finishedAt: string | null;
  attempt: number;
  maxAttempts: number;
  retryOn: string[];
  timeoutMs: number;
  leaseExpiresAt: string | null;
  cancelRequested: boolean;
  result: unknown;
  errorMessage: string | null;
  artifacts: ArtifactInfo[];
  artifactOptions: ArtifactOptions;
  /** The session's browser options, null when it has none. */
  browser: BrowserOptions | null;
  attempts: AttemptRecord[];
  idempotencyKey: string | null;
  /** The schedule that made the session (null: enqueued by a client). */
  scheduleId: string | null;
  /** The fire time of the schedule it was made for. */
  scheduledFor: string | null;
  /** The key its per-key limits count it under (null: none). */
  concurrencyKey: string | null;
  /** Its tags ([]: none). */
  tags: string[];
  /** The session's named state options, null when it has none. */
  state: StateOptions | null;
  /** What became of its `state.save` (null: not saved yet, or nothing to save). */
  stateSave: StateSaveOutcome | null;
};

/** Fields a session list leaves out unless `fields=` asks for them: the ones that can be megabytes. */
export const SESSION_LIST_FIELDS = ['input', 'result', 'attempts', 'artifacts', 'errorMessage'] as const;
export type SessionListField = (typeof SESSION_LIST_FIELDS)[number];

export type ListSessionsQuery = {
  status?: SessionStatus;
  type?: string;
  runnerId?: string;
  /** Sessions made by this schedule. */
  scheduleId?: string;
  /** Sessions carrying this tag. */
  tag?: string;
  limit?: number;
  cursor?: string;
  /** Extra fields of each item, comma-separated (see SESSION_LIST_FIELDS). */
  fields?: string;
};

/**
 * A session in a list: everything but the fields that can be large (errorMessage cut to 200 characters),
 * which `fields=` adds. A field asked for but over 64 KiB is left out and named in `truncated`.
 */
export type SessionSummary = Flat<
  Omit<SessionView, SessionListField | 'state' | 'stateSave'> & {
    errorMessage: string | null;
    input?: unknown;
    result?: unknown;
    attempts?: AttemptRecord[];
    artifacts?: ArtifactInfo[];
    truncated?: SessionListField[];
  }
>;

/** One object type from an intersection (how editors and the type checks show it). */
type Flat<T> = { [K in keyof T]: T[K] };

export type SessionList = {
  items: SessionSummary[];
  nextCursor: string | null;
};

export type QueueView = {
  byStatus: Record<string, number>;
  queuedByPriority: { priority: number; count: number }[];
  queuedByType: { type: string; count: number }[];
  oldestQueuedAgeMs: number | null;
  runnersLive: number;
  fleetCapacity: number;
};

export type RunnerView = {
  runnerId: string;
  status: RunnerStatus;
  live: boolean;
  lastHeartbeat: string;
  heartbeatAgeMs: number;
  activeSessions: number;
  runningSessions: number;
  maxConcurrency: number;
  effectiveConcurrency: number | null;
  totalSessionsExecuted: number;
  totalFailures: number;
  uptimeSeconds: number;
  startedAt: string;
  hostname: string | null;
  version: string | null;
  memoryRssBytes: number | null;
  browserMemoryBytes: number | null;
  /** The session types it serves, as its heartbeats say ([]: not told, e.g. an older runner). */
  types: string[];
};

/** A session type as a runner registers it: its name and the JSON Schema of its input. */
export type SessionTypeRegistration = {
  name: string;
  /** JSON Schema (draft 2020-12 or 07) of `input`; null: the API does not check it (`note` says why). */
  schema: Record<string, unknown> | null;
  note?: string;
  /** The type's defaults (defineSession's) for a session enqueued without them: 100 to 86,400,000 ms, 1 to 100. */
  timeoutMs?: number;
  maxAttempts?: number;
};

/** A runner's whole set of types: it replaces what the runner registered before. */
export type RegisterTypesBody = {
  types: SessionTypeRegistration[];
};

export type RegisterTypesReply = {
  types: { name: string; schemaHash: string | null }[];
};

/** A runner that registered a type, and which schema it registered. */
export type SessionTypeRunner = {
  id: string;
  status: RunnerStatus;
  live: boolean;
  registeredAt: string;
  schemaHash: string | null;
};

/**
 * A session type: the schema the API checks `input` against at enqueue (the most recently registered one
 * among live runners, else the last one registered), and the runners that registered it ([]: all gone; the
 * last schema still applies). `conflict` when live runners registered different schemas.
 */
export type SessionTypeView = {
  name: string;
  schema: Record<string, unknown> | null;
  schemaHash: string | null;
  /** `flow`: checked by the API's own flow rules. */
  builtIn: boolean;
  /** Why the schema is null, or what it leaves to the runner. */
  note?: string;
  /**
   * The type's defaults, applied at enqueue to a session that gives none (registered with the schema, by
   * the same runner); absent: the API's (60,000 ms, 1 attempt).
   */
  timeoutMs?: number;
  maxAttempts?: number;
  runners: SessionTypeRunner[];
  conflict?: { message: string; schemas: { schemaHash: string | null; runners: string[] }[] };
};

export type SessionTypeList = {
  types: SessionTypeView[];
};

export type AlertView = {
  name: string;
  severity: string;
  message: string;
  runnerId?: string;
  value: number;
  threshold: number;
};

export type SchedulerConfigView = {
  maxConcurrency: number;
  pollIntervalMs: number;
};

export type SchedulerConfigBody = {
  maxConcurrency?: number;
  pollIntervalMs?: number;
};

/** Per-minute queue flow, fleet-wide (oldest first): depth at the end of the minute, wait and throughput. */
export type StatsTimeseries = {
  minutes: number;
  points: {
    t: string;
    queued: number;
    enqueued: number;
    claimed: number;
    avgClaimWaitMs: number | null;
    finished: number;
    failed: number;
  }[];
};

// ---- schedules -------------------------------------------------------------------------------------

/** After downtime: no missed fire time replayed, only the most recent, or each of them. */
export type ScheduleCatchUp = 'none' | 'latest' | 'all';
/** A fire while the schedule's previous session is not final: make it anyway, or skip it. */
export type ScheduleOverlap = 'allow' | 'skip';

/** The session each fire enqueues: a session request without runAt and idempotencyKey. */
export type ScheduleSessionTemplate = Flat<Omit<CreateSessionBody, 'runAt' | 'idempotencyKey'>>;

export type CreateScheduleBody = {
  /** Unique among schedules. */
  name: string;
  /** Five fields (minute hour day-of-month month day-of-week), or six with seconds first. */
  cron: string;
  /** IANA time zone the expression is read in (default UTC). */
  timezone?: string;
  /** Default true. */
  enabled?: boolean;
  /** Default latest. */
  catchUp?: ScheduleCatchUp;
  /** Default skip. */
  overlap?: ScheduleOverlap;
  session: ScheduleSessionTemplate;
};

/** Fields to change; a new session template replaces the old one whole. */
export type UpdateScheduleBody = {
  name?: string;
  cron?: string;
  timezone?: string;
  enabled?: boolean;
  catchUp?: ScheduleCatchUp;
  overlap?: ScheduleOverlap;
  session?: ScheduleSessionTemplate;
};

/** One session a schedule made. */
export type ScheduleRun = {
  id: string;
  status: SessionStatus;
  scheduledFor: string;
  createdAt: string;
  finishedAt: string | null;
  errorMessage: string | null;
};

export type ScheduleView = {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  catchUp: ScheduleCatchUp;
  overlap: ScheduleOverlap;
  session: ScheduleSessionTemplate;
  /** The next fire time (null while disabled). */
  nextRunAt: string | null;
  /** The fire time of the last session made. */
  lastRunAt: string | null;
  createdAt: string;
  updatedAt: string;
  /** Its latest sessions, newest first. */
  recent: ScheduleRun[];
  /** On create and change: e.g. that no runner has registered the template's type yet. */
  warnings?: string[];
};

export type ListSchedulesQuery = {
  limit?: number;
  cursor?: string;
};

export type ScheduleList = {
  items: ScheduleView[];
  nextCursor: string | null;
};

// ---- runners ---------------------------------------------------------------------------------------

export type LeaseRef = {
  id: string;
  leaseToken: string;
};

/** A completion, fenced by the lease token of the claim it reports on. */
export type CompleteBody = {
  leaseToken: string;
  status: CompletionStatus;
  result?: unknown;
  errorMessage?: string;
};

export type CompleteItem = {
  id: string;
  leaseToken: string;
  status: CompletionStatus;
  result?: unknown;
  errorMessage?: string;
};

export type CompleteBatchBody = {
  items: CompleteItem[];
};

export type CompleteOutcome = {
  id: string;
  outcome: 'accepted' | 'lease-lost' | 'not-found' | 'conflict';
  status?: SessionStatus;
};

export type CompleteBatchReply = {
  items: CompleteOutcome[];
};

export type ClaimBody = {
  slots: number;
  types: string[];
  /** How long the API may hold the claim waiting for work. */
  waitMs?: number;
  maxConcurrency?: number;
  hostname?: string;
  version?: string;
  startedAt?: string;
  /** Finished sessions, stored before the claim (one round trip, one commit): their slots count as free. */
  complete?: CompleteItem[];
};

export type ClaimedSession = {
  id: string;
  type: string;
  input: unknown;
  priority: number;
  attempt: number;
  maxAttempts: number;
  timeoutMs: number;
  leaseToken: string;
  leaseExpiresAt: string;
  createdAt: string;
  artifactOptions: ArtifactOptions;
  /** The session's browser options; null or absent: the runner's defaults. */
  browser?: BrowserOptions | null;
  /** The session's named state options; null or absent: none. */
  state?: StateOptions | null;
};

export type ClaimReply = {
  sessions: ClaimedSession[];
  /** One outcome per item of `complete`, when the claim carried completions. */
  completed?: CompleteOutcome[];
};

export type HeartbeatBody = {
  activeSessions: number;
  maxConcurrency: number;
  /** The leases to renew. */
  sessions: LeaseRef[];
  status?: RunnerStatus;
  hostname?: string;
  version?: string;
  startedAt?: string;
  memoryRssBytes?: number;
  browserMemoryBytes?: number;
  effectiveConcurrency?: number;
  /** The session types this runner serves (shown in GET /v1/runners). */
  types?: string[];
};

export type HeartbeatReply = {
  config: SchedulerConfigView;
  /** Sessions whose cancellation was requested. */
  cancel: string[];
  /** Sessions whose lease this runner no longer holds. */
  lost: string[];
  /** The API holds no type registration of this runner (e.g. a fresh database): register them again. */
  registerTypes?: boolean;
  /** Sessions of this runner somebody watches live: dial their live socket (docs/remote.md). */
  live?: string[];
};

export type StopBody = {
  /** Sessions to hand back to the queue. */
  requeue?: LeaseRef[];
};

/** The result of a session of type `browser` (a remote Playwright connection, GET /v1/browser). */
export type RemoteBrowserResult = {
  relay: {
    bytesFromClient: number;
    bytesToClient: number;
    messagesFromClient: number;
    messagesToClient: number;
    /** From the runner's claim to the end of the connection. */
    ms: number;
  };
};

/** What a live view's frame shows (GET /v1/sessions/:id/live): when it was painted, its size, the page's URL. */
export type LiveFrameMeta = {
  /** Epoch milliseconds of the paint. */
  ts: number;
  width: number;
  height: number;
  url?: string | undefined;
};

/** Whether a live view has frames coming: waiting for the runner, live, or the session has no page. */
export type LiveState = 'waiting' | 'live' | 'no-page';

/** One event of a live view (SfwClient.watchLive). */
export type LiveEvent =
  | { type: 'state'; state: LiveState; message: string }
  | ({ type: 'frame'; jpeg: Buffer } & LiveFrameMeta)
  | { type: 'end'; message: string };
