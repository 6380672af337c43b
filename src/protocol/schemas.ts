import { Type, type Static } from '@sinclair/typebox';
import {
  CANCELLABLE_STATUSES,
  EXPORT_FORMATS,
  SESSION_LIST_FIELDS,
  type SessionListField,
} from '@session-framework/sdk';
import type * as wire from '@session-framework/sdk';
import type * as core from '../core/types.js';
import {
  ARTIFACT_MODES,
  CAPTURE_MODES,
  COMPLETION_STATUSES,
  MAX_ATTEMPTS_RANGE,
  RUNNER_STATUSES,
  SESSION_STATUSES,
  SESSION_TIMEOUT_MS_RANGE,
} from '../core/types.js';
import { UUID_PATTERN } from '../core/ids.js';
import type * as flow from './flow.js';

/**
 * HTTP request and response schemas of API v1: what the server validates and documents. Each body's
 * type is the SDK's (packages/sdk/src/wire.ts), and the agreement at the end of this file fails the build
 * when a schema and its type drift apart.
 */

/** A string enum as plain JSON Schema, so validation errors read "must be equal to one of the allowed values". */
const literals = <T extends readonly string[]>(values: T) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values] });

export const SessionId = Type.String({ pattern: UUID_PATTERN });
export const LeaseToken = Type.String({ pattern: UUID_PATTERN });
export const SessionStatusSchema = literals(SESSION_STATUSES);
export const ArtifactModeSchema = literals(ARTIFACT_MODES);
export const CaptureModeSchema = literals(CAPTURE_MODES);
export const SessionTypeName = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$',
});
export const RunnerIdSchema = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._:@-]*$',
});
export const ArtifactName = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
});

/** What a session asks its runner to capture: HAR, video and downloads beside the screenshot and trace. */
const captureFields = {
  har: Type.Optional(CaptureModeSchema),
  video: Type.Optional(CaptureModeSchema),
  downloads: Type.Optional(Type.Boolean()),
};
export const ArtifactOptionsSchema = Type.Object(
  {
    screenshot: Type.Optional(ArtifactModeSchema),
    trace: Type.Optional(ArtifactModeSchema),
    ...captureFields,
  },
  { additionalProperties: false },
);
/** A session's artifact options as stored: screenshot and trace always, the captures when given. */
export const ArtifactOptionsView = Type.Object({
  screenshot: ArtifactModeSchema,
  trace: ArtifactModeSchema,
  ...captureFields,
});

/** An HTTP header name (a token) and a value without control characters but tab. */
const HEADER_NAME = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
const HEADER_VALUE = '^[\\t\\x20-\\x7e\\x80-\\uffff]*$';

/** Options of a browser session's context (Playwright's newContext options of the same names). */
export const BrowserOptionsSchema = Type.Object(
  {
    viewport: Type.Optional(
      Type.Object(
        {
          width: Type.Integer({ minimum: 100, maximum: 10_000 }),
          height: Type.Integer({ minimum: 100, maximum: 10_000 }),
        },
        { additionalProperties: false },
      ),
    ),
    locale: Type.Optional(
      Type.String({ minLength: 2, maxLength: 35, pattern: '^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$' }),
    ),
    timezoneId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_+/-]+$' })),
    userAgent: Type.Optional(Type.String({ minLength: 1, maxLength: 1000, pattern: '^[\\x20-\\x7e]+$' })),
    extraHTTPHeaders: Type.Optional(
      Type.Record(
        Type.String({ pattern: HEADER_NAME }),
        Type.String({ maxLength: 8192, pattern: HEADER_VALUE }),
        { maxProperties: 100, additionalProperties: false },
      ),
    ),
    proxy: Type.Optional(
      Type.Object(
        {
          // http(s)://host:port; what else the field holds is refused by checkNewSession, saying so.
          server: Type.String({
            minLength: 1,
            maxLength: 2000,
            description: 'http://host:port or https://host:port',
          }),
          username: Type.Optional(Type.String({ maxLength: 1000 })),
          password: Type.Optional(Type.String({ maxLength: 1000 })),
        },
        { additionalProperties: false },
      ),
    ),
    javaScriptEnabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export type BrowserOptions = wire.BrowserOptions;

/** A named state's name: the rule of session type names. */
export const StateName = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$',
});
/** The longest `state.ttlMs`: a year. */
export const STATE_TTL_MAX_MS = 366 * 86_400_000;

/** A session's named state: the one its context starts from, the one it is saved under (docs/state.md). */
export const StateOptionsSchema = Type.Object(
  {
    use: Type.Optional(StateName),
    save: Type.Optional(StateName),
    overwrite: Type.Optional(Type.Boolean()),
    ttlMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: STATE_TTL_MAX_MS })),
  },
  { additionalProperties: false },
);
export type StateOptions = wire.StateOptions;

/**
 * A session's input: any JSON to the server's schema. A flow's is checked by checkFlowInput after it,
 * another type's by that type on the runner; `x-session-input` has /openapi.json describe it as the
 * FlowInput component when the type is flow (src/server/openapi.ts).
 */
export const SessionInputSchema = Type.Unknown({
  description: "FlowInput when type is flow, else the session type's own input",
  'x-session-input': true,
});

/** A session's timeout and attempts, as enqueue and a session type's registered defaults take them. */
const SessionTimeoutMs = Type.Integer({
  minimum: SESSION_TIMEOUT_MS_RANGE.min,
  maximum: SESSION_TIMEOUT_MS_RANGE.max,
});
const MaxAttempts = Type.Integer({ minimum: MAX_ATTEMPTS_RANGE.min, maximum: MAX_ATTEMPTS_RANGE.max });

/** A session's tag: what `tags` at enqueue, `?tag=`, /v1/tags/:tag, export and bulk cancel take. */
export const TagName = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._:/=@+-]*$',
  description: 'letters, digits and . _ : / = @ + -, starting with a letter or digit',
});
export const TAGS_MAX = 20;
export const TagsSchema = Type.Array(TagName, { maxItems: TAGS_MAX, uniqueItems: true });

export const CreateSessionBody = Type.Object(
  {
    type: SessionTypeName,
    input: Type.Optional(SessionInputSchema),
    priority: Type.Optional(Type.Integer({ minimum: -1000, maximum: 1000 })),
    runAt: Type.Optional(Type.String({ format: 'date-time' })),
    timeoutMs: Type.Optional(SessionTimeoutMs),
    maxAttempts: Type.Optional(MaxAttempts),
    retryOn: Type.Optional(
      Type.Array(literals(['error', 'failed'] as const), { maxItems: 2, uniqueItems: true }),
    ),
    artifacts: Type.Optional(ArtifactOptionsSchema),
    browser: Type.Optional(BrowserOptionsSchema),
    state: Type.Optional(StateOptionsSchema),
    idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    concurrencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    tags: Type.Optional(TagsSchema),
  },
  { additionalProperties: false },
);
export type CreateSessionBody = wire.CreateSessionBody;

export const BATCH_MAX = 10_000;
export const BatchBody = Type.Object(
  { sessions: Type.Array(CreateSessionBody, { minItems: 1, maxItems: BATCH_MAX }) },
  { additionalProperties: false },
);
export type BatchBody = wire.BatchBody;

/** What the API could not check about an enqueue (a type no runner has registered). */
const Warnings = Type.Optional(Type.Array(Type.String()));

export const ArtifactInfoSchema = Type.Object({
  name: Type.String(),
  size: Type.Integer(),
  contentType: Type.String(),
});
export const AttemptRecordSchema = Type.Object({
  attempt: Type.Integer(),
  runnerId: Type.Union([Type.String(), Type.Null()]),
  status: SessionStatusSchema,
  errorMessage: Type.Union([Type.String(), Type.Null()]),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  finishedAt: Type.String(),
});

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** The fields a session and its list item share (all but the ones that can be large). */
const sessionFields = {
  id: Type.String(),
  type: Type.String(),
  status: SessionStatusSchema,
  priority: Type.Integer(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  runAt: Type.String(),
  claimedBy: Nullable(Type.String()),
  claimedAt: Nullable(Type.String()),
  finishedAt: Nullable(Type.String()),
  attempt: Type.Integer(),
  maxAttempts: Type.Integer(),
  retryOn: Type.Array(Type.String()),
  timeoutMs: Type.Integer(),
  leaseExpiresAt: Nullable(Type.String()),
  cancelRequested: Type.Boolean(),
  artifactOptions: ArtifactOptionsView,
  /** The session's browser options, null when it has none (a proxy's password never shows). */
  browser: Nullable(BrowserOptionsSchema),
  idempotencyKey: Nullable(Type.String()),
  /** The schedule that made the session and the fire time it was made for (null: a client enqueued it). */
  scheduleId: Nullable(Type.String()),
  scheduledFor: Nullable(Type.String()),
  /** The key its per-key limits count it under (null: none). */
  concurrencyKey: Nullable(Type.String()),
  tags: Type.Array(Type.String()),
};

/** What became of a session's `state.save`. */
export const StateSaveOutcomeSchema = Type.Object({
  name: Type.String(),
  saved: Type.Boolean(),
  version: Type.Integer(),
  message: Type.Optional(Type.String()),
});

export type StateSaveOutcome = wire.StateSaveOutcome;

export const SessionView = Type.Object({
  ...sessionFields,
  input: Type.Unknown(),
  result: Type.Unknown(),
  errorMessage: Nullable(Type.String()),
  artifacts: Type.Array(ArtifactInfoSchema),
  attempts: Type.Array(AttemptRecordSchema),
  state: Nullable(StateOptionsSchema),
  stateSave: Nullable(StateSaveOutcomeSchema),
});
export type SessionView = wire.SessionView;
export const CreatedSession = Type.Object({ ...SessionView.properties, warnings: Warnings });
export type CreatedSession = wire.CreatedSession;
export const BatchReply = Type.Object({ items: Type.Array(SessionView), warnings: Warnings });
export type BatchReply = wire.BatchReply;

/** Fields a session list leaves out unless `fields=` asks for them (the SDK's list, which it sends). */
export { SESSION_LIST_FIELDS, type SessionListField };
/** A summary's errorMessage is cut to this many characters (ending in …); `fields=errorMessage` gives it whole. */
export const LIST_ERROR_MESSAGE_CHARS = 200;
/** A field asked for with `fields=` whose JSON is larger than this is left out of a list item (see truncated). */
export const LIST_FIELD_MAX_BYTES = 64 * 1024;
/** A list page stops early (with nextCursor) once the fields asked for add up to this many bytes. */
export const LIST_PAGE_MAX_BYTES = 4 * 1024 * 1024;

export const ListSessionsQuery = Type.Object(
  {
    status: Type.Optional(SessionStatusSchema),
    type: Type.Optional(SessionTypeName),
    runnerId: Type.Optional(RunnerIdSchema),
    scheduleId: Type.Optional(SessionId),
    tag: Type.Optional(TagName),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    fields: Type.Optional(
      Type.String({
        maxLength: 200,
        description: `Extra fields of each item, comma-separated: ${SESSION_LIST_FIELDS.join(', ')}. Items are summaries without them by default.`,
      }),
    ),
  },
  { additionalProperties: false },
);
export type ListSessionsQuery = wire.ListSessionsQuery;

/**
 * A session in a list: everything but the fields that can be large, which `fields=` adds. A field asked for
 * but larger than LIST_FIELD_MAX_BYTES is left out and named in `truncated`: read the session for it.
 */
export const SessionSummary = Type.Object({
  ...sessionFields,
  errorMessage: Nullable(Type.String({ description: `First ${LIST_ERROR_MESSAGE_CHARS} characters` })),
  input: Type.Optional(Type.Unknown()),
  result: Type.Optional(Type.Unknown()),
  attempts: Type.Optional(Type.Array(AttemptRecordSchema)),
  artifacts: Type.Optional(Type.Array(ArtifactInfoSchema)),
  truncated: Type.Optional(Type.Array(literals(SESSION_LIST_FIELDS))),
});
export type SessionSummary = wire.SessionSummary;

export const SessionList = Type.Object({
  items: Type.Array(SessionSummary),
  nextCursor: Nullable(Type.String()),
});
export type SessionList = wire.SessionList;

export const IdParams = Type.Object({ id: SessionId }, { additionalProperties: false });
export const ArtifactParams = Type.Object(
  { id: SessionId, name: ArtifactName },
  { additionalProperties: false },
);
export const RunnerParams = Type.Object({ runnerId: RunnerIdSchema }, { additionalProperties: false });

export const WaitQuery = Type.Object(
  { timeoutMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 300_000 })) },
  { additionalProperties: false },
);

export const CompleteBody = Type.Object(
  {
    leaseToken: LeaseToken,
    status: literals(COMPLETION_STATUSES),
    result: Type.Optional(Type.Unknown()),
    errorMessage: Type.Optional(Type.String({ maxLength: 65536 })),
  },
  { additionalProperties: false },
);
export type CompleteBody = wire.CompleteBody;

export const COMPLETE_BATCH_MAX = 100;
export const CompleteItem = Type.Object(
  { id: SessionId, ...CompleteBody.properties },
  { additionalProperties: false },
);
export type CompleteItem = wire.CompleteItem;
export const CompleteBatchBody = Type.Object(
  { items: Type.Array(CompleteItem, { minItems: 1, maxItems: COMPLETE_BATCH_MAX }) },
  { additionalProperties: false },
);
export type CompleteBatchBody = wire.CompleteBatchBody;
export const CompleteOutcome = Type.Object({
  id: Type.String(),
  outcome: literals(['accepted', 'lease-lost', 'not-found', 'conflict'] as const),
  status: Type.Optional(SessionStatusSchema),
});
export type CompleteOutcome = wire.CompleteOutcome;
export const CompleteBatchReply = Type.Object({ items: Type.Array(CompleteOutcome) });
export type CompleteBatchReply = wire.CompleteBatchReply;

export const ClaimBody = Type.Object(
  {
    slots: Type.Integer({ minimum: 0, maximum: 1000 }),
    types: Type.Array(SessionTypeName, { minItems: 1, maxItems: 1000 }),
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
    maxConcurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    hostname: Type.Optional(Type.String({ maxLength: 255 })),
    version: Type.Optional(Type.String({ maxLength: 100 })),
    startedAt: Type.Optional(Type.String({ format: 'date-time' })),
    /** Finished sessions, stored before the claim (one round trip, one commit): their slots count as free. */
    complete: Type.Optional(Type.Array(CompleteItem, { maxItems: COMPLETE_BATCH_MAX })),
  },
  { additionalProperties: false },
);
export type ClaimBody = wire.ClaimBody;

export const ClaimedSession = Type.Object({
  id: Type.String(),
  type: Type.String(),
  input: Type.Unknown(),
  priority: Type.Integer(),
  attempt: Type.Integer(),
  maxAttempts: Type.Integer(),
  timeoutMs: Type.Integer(),
  leaseToken: Type.String(),
  leaseExpiresAt: Type.String(),
  createdAt: Type.String(),
  artifactOptions: ArtifactOptionsView,
  /** The session's browser options; null or absent: the runner's defaults. */
  browser: Type.Optional(Nullable(BrowserOptionsSchema)),
  /** The session's named state options; null or absent: none. */
  state: Type.Optional(Nullable(StateOptionsSchema)),
});
export type ClaimedSession = wire.ClaimedSession;
export const ClaimReply = Type.Object({
  sessions: Type.Array(ClaimedSession),
  /** One outcome per item of `complete`, when the claim carried completions. */
  completed: Type.Optional(Type.Array(CompleteOutcome)),
});
export type ClaimReply = wire.ClaimReply;

export const LeaseRef = Type.Object(
  { id: SessionId, leaseToken: LeaseToken },
  { additionalProperties: false },
);

export const HeartbeatBody = Type.Object(
  {
    activeSessions: Type.Integer({ minimum: 0, maximum: 100_000 }),
    maxConcurrency: Type.Integer({ minimum: 0, maximum: 1000 }),
    sessions: Type.Array(LeaseRef, { maxItems: 1000 }),
    status: Type.Optional(literals(RUNNER_STATUSES)),
    hostname: Type.Optional(Type.String({ maxLength: 255 })),
    version: Type.Optional(Type.String({ maxLength: 100 })),
    startedAt: Type.Optional(Type.String({ format: 'date-time' })),
    memoryRssBytes: Type.Optional(Type.Integer({ minimum: 0 })),
    browserMemoryBytes: Type.Optional(Type.Integer({ minimum: 0 })),
    effectiveConcurrency: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
    types: Type.Optional(Type.Array(SessionTypeName, { maxItems: 1000 })),
  },
  { additionalProperties: false },
);
export type HeartbeatBody = wire.HeartbeatBody;

export const SchedulerConfigView = Type.Object({
  maxConcurrency: Type.Integer(),
  pollIntervalMs: Type.Integer(),
});
export type SchedulerConfigView = wire.SchedulerConfigView;
export const SchedulerConfigBody = Type.Object(
  {
    maxConcurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    pollIntervalMs: Type.Optional(Type.Integer({ minimum: 50, maximum: 600_000 })),
  },
  { additionalProperties: false },
);
export type SchedulerConfigBody = wire.SchedulerConfigBody;

export const HeartbeatReply = Type.Object({
  config: SchedulerConfigView,
  cancel: Type.Array(Type.String()),
  lost: Type.Array(Type.String()),
  registerTypes: Type.Optional(Type.Boolean()),
  live: Type.Optional(Type.Array(Type.String())),
});
export type HeartbeatReply = wire.HeartbeatReply;

export const StopBody = Type.Object(
  { requeue: Type.Optional(Type.Array(LeaseRef, { maxItems: 1000 })) },
  { additionalProperties: false },
);
export type StopBody = wire.StopBody;

export const RunnerView = Type.Object({
  runnerId: Type.String(),
  status: literals(RUNNER_STATUSES),
  live: Type.Boolean(),
  lastHeartbeat: Type.String(),
  heartbeatAgeMs: Type.Integer(),
  activeSessions: Type.Integer(),
  runningSessions: Type.Integer(),
  maxConcurrency: Type.Integer(),
  effectiveConcurrency: Nullable(Type.Integer()),
  totalSessionsExecuted: Type.Integer(),
  totalFailures: Type.Integer(),
  uptimeSeconds: Type.Integer(),
  startedAt: Type.String(),
  hostname: Nullable(Type.String()),
  version: Nullable(Type.String()),
  memoryRssBytes: Nullable(Type.Integer()),
  browserMemoryBytes: Nullable(Type.Integer()),
  types: Type.Array(Type.String()),
});
export type RunnerView = wire.RunnerView;
export const RunnerList = Type.Object({ items: Type.Array(RunnerView) });

/** Most session types one runner registers, and the largest input schema of one (its JSON text). */
export const REGISTER_TYPES_MAX = 200;
export const TYPE_SCHEMA_MAX_BYTES = 256 * 1024;

export const SessionTypeRegistration = Type.Object(
  {
    name: SessionTypeName,
    schema: Nullable(Type.Record(Type.String(), Type.Unknown())),
    note: Type.Optional(Type.String({ maxLength: 1000 })),
    timeoutMs: Type.Optional(SessionTimeoutMs),
    maxAttempts: Type.Optional(MaxAttempts),
  },
  { additionalProperties: false },
);
export type SessionTypeRegistration = wire.SessionTypeRegistration;
export const RegisterTypesBody = Type.Object(
  { types: Type.Array(SessionTypeRegistration, { minItems: 1, maxItems: REGISTER_TYPES_MAX }) },
  { additionalProperties: false },
);
export type RegisterTypesBody = wire.RegisterTypesBody;
export const RegisterTypesReply = Type.Object({
  types: Type.Array(Type.Object({ name: Type.String(), schemaHash: Nullable(Type.String()) })),
});
export type RegisterTypesReply = wire.RegisterTypesReply;

export const SessionTypeRunner = Type.Object({
  id: Type.String(),
  status: literals(RUNNER_STATUSES),
  live: Type.Boolean(),
  registeredAt: Type.String(),
  schemaHash: Nullable(Type.String()),
});
export const SessionTypeView = Type.Object({
  name: Type.String(),
  schema: Nullable(Type.Record(Type.String(), Type.Unknown())),
  schemaHash: Nullable(Type.String()),
  builtIn: Type.Boolean(),
  note: Type.Optional(Type.String()),
  timeoutMs: Type.Optional(Type.Integer()),
  maxAttempts: Type.Optional(Type.Integer()),
  runners: Type.Array(SessionTypeRunner),
  conflict: Type.Optional(
    Type.Object({
      message: Type.String(),
      schemas: Type.Array(
        Type.Object({ schemaHash: Nullable(Type.String()), runners: Type.Array(Type.String()) }),
      ),
    }),
  ),
});
export type SessionTypeView = wire.SessionTypeView;
export const SessionTypeList = Type.Object({ types: Type.Array(SessionTypeView) });
export type SessionTypeList = wire.SessionTypeList;

export const QueueView = Type.Object({
  byStatus: Type.Record(Type.String(), Type.Integer()),
  queuedByPriority: Type.Array(Type.Object({ priority: Type.Integer(), count: Type.Integer() })),
  queuedByType: Type.Array(Type.Object({ type: Type.String(), count: Type.Integer() })),
  oldestQueuedAgeMs: Nullable(Type.Integer()),
  runnersLive: Type.Integer(),
  fleetCapacity: Type.Integer(),
});
export type QueueView = wire.QueueView;

export const AlertView = Type.Object({
  name: Type.String(),
  severity: Type.String(),
  message: Type.String(),
  runnerId: Type.Optional(Type.String()),
  value: Type.Number(),
  threshold: Type.Number(),
});
export type AlertView = wire.AlertView;
export const AlertList = Type.Object({ items: Type.Array(AlertView) });

export const ErrorBodySchema = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), path: Type.Optional(Type.String()) }),
});

export const StatsTimeseriesQuery = Type.Object(
  { minutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1440 })) },
  { additionalProperties: false },
);
/** Per-minute queue flow, fleet-wide (oldest first): depth at the end of the minute, wait and throughput. */
export const StatsTimeseries = Type.Object({
  minutes: Type.Integer(),
  points: Type.Array(
    Type.Object({
      t: Type.String(),
      queued: Type.Integer(),
      enqueued: Type.Integer(),
      claimed: Type.Integer(),
      avgClaimWaitMs: Nullable(Type.Integer()),
      finished: Type.Integer(),
      failed: Type.Integer(),
    }),
  ),
});
export type StatsTimeseries = wire.StatsTimeseries;

export const SCHEDULE_CATCH_UPS = ['none', 'latest', 'all'] as const;
export const SCHEDULE_OVERLAPS = ['allow', 'skip'] as const;
export type ScheduleCatchUp = wire.ScheduleCatchUp;
export type ScheduleOverlap = wire.ScheduleOverlap;

/** The session each fire enqueues: a session request without runAt and idempotencyKey. */
export const ScheduleSessionTemplate = Type.Omit(CreateSessionBody, ['runAt', 'idempotencyKey'], {
  additionalProperties: false,
});
export type ScheduleSessionTemplate = wire.ScheduleSessionTemplate;

const scheduleFields = {
  name: Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\x00-\\x1f\\x7f]+$' }),
  cron: Type.String({ minLength: 1, maxLength: 200 }),
  timezone: Type.String({ minLength: 1, maxLength: 64 }),
  enabled: Type.Boolean(),
  catchUp: literals(SCHEDULE_CATCH_UPS),
  overlap: literals(SCHEDULE_OVERLAPS),
  session: ScheduleSessionTemplate,
};
export const CreateScheduleBody = Type.Object(
  {
    name: scheduleFields.name,
    cron: scheduleFields.cron,
    timezone: Type.Optional(scheduleFields.timezone),
    enabled: Type.Optional(scheduleFields.enabled),
    catchUp: Type.Optional(scheduleFields.catchUp),
    overlap: Type.Optional(scheduleFields.overlap),
    session: scheduleFields.session,
  },
  { additionalProperties: false },
);
export type CreateScheduleBody = wire.CreateScheduleBody;
export const UpdateScheduleBody = Type.Partial(Type.Object(scheduleFields), { additionalProperties: false });
export type UpdateScheduleBody = wire.UpdateScheduleBody;

export const ScheduleRun = Type.Object({
  id: Type.String(),
  status: SessionStatusSchema,
  scheduledFor: Type.String(),
  createdAt: Type.String(),
  finishedAt: Nullable(Type.String()),
  errorMessage: Nullable(Type.String()),
});
export type ScheduleRun = wire.ScheduleRun;
export const ScheduleView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  cron: Type.String(),
  timezone: Type.String(),
  enabled: Type.Boolean(),
  catchUp: literals(SCHEDULE_CATCH_UPS),
  overlap: literals(SCHEDULE_OVERLAPS),
  session: ScheduleSessionTemplate,
  nextRunAt: Nullable(Type.String()),
  lastRunAt: Nullable(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  recent: Type.Array(ScheduleRun),
  warnings: Warnings,
});
export type ScheduleView = wire.ScheduleView;
export const ListSchedulesQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);
export type ListSchedulesQuery = wire.ListSchedulesQuery;
export const ScheduleList = Type.Object({
  items: Type.Array(ScheduleView),
  nextCursor: Nullable(Type.String()),
});
export type ScheduleList = wire.ScheduleList;

// ---- batches: tags, export, bulk cancel -------------------------------------------------------------

export const TagParams = Type.Object({ tag: TagName }, { additionalProperties: false });
export const TagView = Type.Object({
  tag: Type.String(),
  total: Type.Integer(),
  byStatus: Type.Object(
    Object.fromEntries(SESSION_STATUSES.map((st) => [st, Type.Integer()])) as Record<
      core.SessionStatus,
      ReturnType<typeof Type.Integer>
    >,
  ),
  finished: Type.Integer(),
  done: Type.Boolean(),
  oldestCreatedAt: Nullable(Type.String()),
  newestCreatedAt: Nullable(Type.String()),
  lastFinishedAt: Nullable(Type.String()),
});
export type TagView = wire.TagView;

/** Most ids one bulk cancel names. */
export const CANCEL_IDS_MAX = 10_000;
export const CancelSessionsBody = Type.Object(
  {
    tag: Type.Optional(TagName),
    status: Type.Optional(literals(CANCELLABLE_STATUSES)),
    type: Type.Optional(SessionTypeName),
    ids: Type.Optional(Type.Array(SessionId, { minItems: 1, maxItems: CANCEL_IDS_MAX })),
  },
  { additionalProperties: false },
);
export type CancelSessionsBody = wire.CancelSessionsBody;
export const CancelSessionsReply = Type.Object({ cancelled: Type.Integer(), requested: Type.Integer() });
export type CancelSessionsReply = wire.CancelSessionsReply;

export const ExportSessionsQuery = Type.Object(
  {
    format: Type.Optional(literals(EXPORT_FORMATS)),
    tag: Type.Optional(TagName),
    status: Type.Optional(SessionStatusSchema),
    type: Type.Optional(SessionTypeName),
    since: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);
export type ExportSessionsQuery = wire.ExportSessionsQuery;

// ---- one shape per concept -------------------------------------------------------------------------

/** True when A and B are the same type, not merely assignable one way (an extra optional field counts). */
export type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Agree<T extends Record<string, true>> = T;

/**
 * Each schema validates exactly the SDK's type of the same name, and the domain types of core and the
 * flow steps are the SDK's too: tsc names the entry that is `false` when one side changes alone.
 */
type _WireAgreement = Agree<{
  BrowserOptions: Same<Static<typeof BrowserOptionsSchema>, wire.BrowserOptions>;
  StateOptions: Same<Static<typeof StateOptionsSchema>, wire.StateOptions>;
  StateSaveOutcome: Same<Static<typeof StateSaveOutcomeSchema>, wire.StateSaveOutcome>;
  CreateSessionBody: Same<Static<typeof CreateSessionBody>, wire.CreateSessionBody>;
  BatchBody: Same<Static<typeof BatchBody>, wire.BatchBody>;
  SessionView: Same<Static<typeof SessionView>, wire.SessionView>;
  CreatedSession: Same<Static<typeof CreatedSession>, wire.CreatedSession>;
  BatchReply: Same<Static<typeof BatchReply>, wire.BatchReply>;
  SessionTypeRegistration: Same<Static<typeof SessionTypeRegistration>, wire.SessionTypeRegistration>;
  RegisterTypesBody: Same<Static<typeof RegisterTypesBody>, wire.RegisterTypesBody>;
  RegisterTypesReply: Same<Static<typeof RegisterTypesReply>, wire.RegisterTypesReply>;
  SessionTypeRunner: Same<Static<typeof SessionTypeRunner>, wire.SessionTypeRunner>;
  SessionTypeView: Same<Static<typeof SessionTypeView>, wire.SessionTypeView>;
  SessionTypeList: Same<Static<typeof SessionTypeList>, wire.SessionTypeList>;
  ListSessionsQuery: Same<Static<typeof ListSessionsQuery>, wire.ListSessionsQuery>;
  SessionSummary: Same<Static<typeof SessionSummary>, wire.SessionSummary>;
  SessionList: Same<Static<typeof SessionList>, wire.SessionList>;
  CompleteBody: Same<Static<typeof CompleteBody>, wire.CompleteBody>;
  CompleteItem: Same<Static<typeof CompleteItem>, wire.CompleteItem>;
  CompleteBatchBody: Same<Static<typeof CompleteBatchBody>, wire.CompleteBatchBody>;
  CompleteOutcome: Same<Static<typeof CompleteOutcome>, wire.CompleteOutcome>;
  CompleteBatchReply: Same<Static<typeof CompleteBatchReply>, wire.CompleteBatchReply>;
  ClaimBody: Same<Static<typeof ClaimBody>, wire.ClaimBody>;
  ClaimedSession: Same<Static<typeof ClaimedSession>, wire.ClaimedSession>;
  ClaimReply: Same<Static<typeof ClaimReply>, wire.ClaimReply>;
  LeaseRef: Same<Static<typeof LeaseRef>, wire.LeaseRef>;
  HeartbeatBody: Same<Static<typeof HeartbeatBody>, wire.HeartbeatBody>;
  HeartbeatReply: Same<Static<typeof HeartbeatReply>, wire.HeartbeatReply>;
  SchedulerConfigView: Same<Static<typeof SchedulerConfigView>, wire.SchedulerConfigView>;
  SchedulerConfigBody: Same<Static<typeof SchedulerConfigBody>, wire.SchedulerConfigBody>;
  StopBody: Same<Static<typeof StopBody>, wire.StopBody>;
  RunnerView: Same<Static<typeof RunnerView>, wire.RunnerView>;
  RunnerList: Same<Static<typeof RunnerList>, { items: wire.RunnerView[] }>;
  QueueView: Same<Static<typeof QueueView>, wire.QueueView>;
  AlertView: Same<Static<typeof AlertView>, wire.AlertView>;
  AlertList: Same<Static<typeof AlertList>, { items: wire.AlertView[] }>;
  StatsTimeseries: Same<Static<typeof StatsTimeseries>, wire.StatsTimeseries>;
  ScheduleSessionTemplate: Same<Static<typeof ScheduleSessionTemplate>, wire.ScheduleSessionTemplate>;
  CreateScheduleBody: Same<Static<typeof CreateScheduleBody>, wire.CreateScheduleBody>;
  UpdateScheduleBody: Same<Static<typeof UpdateScheduleBody>, wire.UpdateScheduleBody>;
  ScheduleRun: Same<Static<typeof ScheduleRun>, wire.ScheduleRun>;
  ScheduleView: Same<Static<typeof ScheduleView>, wire.ScheduleView>;
  ListSchedulesQuery: Same<Static<typeof ListSchedulesQuery>, wire.ListSchedulesQuery>;
  ScheduleList: Same<Static<typeof ScheduleList>, wire.ScheduleList>;
  TagView: Same<Static<typeof TagView>, wire.TagView>;
  CancelSessionsBody: Same<Static<typeof CancelSessionsBody>, wire.CancelSessionsBody>;
  CancelSessionsReply: Same<Static<typeof CancelSessionsReply>, wire.CancelSessionsReply>;
  ExportSessionsQuery: Same<Static<typeof ExportSessionsQuery>, wire.ExportSessionsQuery>;
  ScheduleCatchUp: Same<(typeof SCHEDULE_CATCH_UPS)[number], wire.ScheduleCatchUp>;
  ScheduleOverlap: Same<(typeof SCHEDULE_OVERLAPS)[number], wire.ScheduleOverlap>;
  ArtifactInfo: Same<Static<typeof ArtifactInfoSchema>, wire.ArtifactInfo>;
  AttemptRecord: Same<Static<typeof AttemptRecordSchema>, wire.AttemptRecord>;
  ErrorBody: wire.ErrorBody extends Static<typeof ErrorBodySchema> ? true : false;
  SessionStatus: Same<core.SessionStatus, wire.SessionStatus>;
  CompletionStatus: Same<core.CompletionStatus, wire.CompletionStatus>;
  RunnerStatus: Same<core.RunnerStatus, wire.RunnerStatus>;
  ArtifactMode: Same<core.ArtifactMode, wire.ArtifactMode>;
  coreArtifactOptions: Same<core.ArtifactOptions, wire.ArtifactOptions>;
  ArtifactOptions: Same<Static<typeof ArtifactOptionsView>, wire.ArtifactOptions>;
  CaptureMode: Same<core.CaptureMode, wire.CaptureMode>;
  coreArtifactInfo: Same<core.ArtifactInfo, wire.ArtifactInfo>;
  coreAttemptRecord: Same<core.AttemptRecord, wire.AttemptRecord>;
  FlowStep: Same<flow.FlowStep, wire.FlowStep>;
  FlowSessionInput: Same<flow.FlowSessionInput, wire.FlowSessionInput>;
  FlowStepResult: Same<flow.FlowStepResult, wire.FlowStepResult>;
  FlowResult: Same<flow.FlowResult, wire.FlowResult>;
}>;
