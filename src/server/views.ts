import type { ListColumn, SessionRow, SessionSummaryRow } from '../store/sessions.js';
import type { RunnerRow } from '../store/runners.js';
import type { ScheduleRow, ScheduleRunRow } from '../store/schedules.js';
import type { TypeRegistrationRow } from '../store/types.js';
import type {
  BrowserOptions,
  RunnerView,
  ScheduleView,
  SessionListField,
  SessionSummary,
  SessionTypeView,
  SessionView,
} from '../protocol/schemas.js';
import type { AttemptRecord, StoredArtifact } from '../core/types.js';
import type { StateVersionRow } from '../store/states.js';
import type { StateDetail, StateView } from '@session-framework/sdk';

/** Table rows → wire shapes (camelCase, ISO timestamps). */

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** The fields a session and its list item share: everything but the ones that can be large. */
function sessionFields(r: SessionSummaryRow) {
  return {
    id: r.id,
    type: r.type,
    status: r.status,
    priority: r.priority,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    runAt: r.run_at.toISOString(),
    claimedBy: r.claimed_by,
    claimedAt: iso(r.claimed_at),
    finishedAt: iso(r.finished_at),
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    retryOn: r.retry_on,
    timeoutMs: r.timeout_ms,
    leaseExpiresAt: iso(r.lease_expires_at),
    cancelRequested: r.cancel_requested,
    errorMessage: r.error_message,
    artifactOptions: r.artifact_options,
    browser: browserView(r.browser_options),
    idempotencyKey: r.idempotency_key,
    scheduleId: r.schedule_id,
    scheduledFor: iso(r.scheduled_for),
    concurrencyKey: r.concurrency_key,
    tags: r.tags,
  };
}

/** A session's browser options as a client sees them: a proxy's password never shows. */
function browserView(b: BrowserOptions | null): BrowserOptions | null {
  if (!b) return null;
  if (!b.proxy || b.proxy.password === undefined) return b;
  return { ...b, proxy: { ...b.proxy, password: '[redacted]' } };
}

/** What a client sees of an artifact (not where the API keeps it). */
const artifactViews = (list: StoredArtifact[]) =>
  list.map((a) => ({ name: a.name, size: a.size, contentType: a.contentType }));

/** Times in the history as every other time (entries written before sfw_time kept Postgres' format). */
const isoText = (t: string | null) => (t === null ? null : new Date(t).toISOString());
const attemptViews = (list: AttemptRecord[]): AttemptRecord[] =>
  list.map((a) => ({
    ...a,
    startedAt: isoText(a.startedAt),
    finishedAt: isoText(a.finishedAt) ?? a.finishedAt,
  }));

export function sessionView(r: SessionRow): SessionView {
  return {
    ...sessionFields(r),
    input: r.input,
    result: r.result ?? null,
    artifacts: artifactViews(r.artifacts),
    attempts: attemptViews(r.attempts),
    state: r.state_options ?? null,
    stateSave: r.state_saved ?? null,
  };
}

/** A named state's version as listed: never its data. */
export function stateView(r: StateVersionRow): StateView {
  return {
    name: r.name,
    version: r.version,
    size: r.size,
    updatedAt: r.saved_at.toISOString(),
    savedBySession: r.saved_by_session,
    encrypted: r.encrypted,
    expiresAt: iso(r.expires_at),
  };
}

/** A named state with its kept versions (rows newest first, at least one). */
export function stateDetailView(rows: StateVersionRow[]): StateDetail {
  return {
    ...stateView(rows[0]!),
    versions: rows.map((r) => ({
      version: r.version,
      size: r.size,
      encrypted: r.encrypted,
      savedAt: r.saved_at.toISOString(),
      savedBySession: r.saved_by_session,
      expiresAt: iso(r.expires_at),
    })),
  };
}

/** The list field each extra column becomes. */
export const LIST_FIELD_COLUMNS: Record<SessionListField, ListColumn> = {
  input: 'input',
  result: 'result',
  attempts: 'attempts',
  artifacts: 'artifacts',
  errorMessage: 'error_message',
};

/** A list item: the summary, plus the extra columns read for it (a cut one is named in `truncated`). */
export function sessionSummaryView(
  r: SessionSummaryRow,
  extra?: { values: Partial<Record<ListColumn, unknown>>; cut: ListColumn[] },
  fields: readonly SessionListField[] = [],
): SessionSummary {
  const out: SessionSummary = sessionFields(r);
  if (!extra) return out;
  const truncated: SessionListField[] = [];
  for (const f of fields) {
    const column = LIST_FIELD_COLUMNS[f];
    if (extra.cut.includes(column)) {
      truncated.push(f);
      continue;
    }
    const v = extra.values[column];
    if (f === 'input') out.input = v;
    else if (f === 'result') out.result = v ?? null;
    else if (f === 'attempts') out.attempts = attemptViews(v as AttemptRecord[]);
    else if (f === 'artifacts') out.artifacts = artifactViews(v as StoredArtifact[]);
    else out.errorMessage = (v as string | null) ?? null;
  }
  if (truncated.length > 0) out.truncated = truncated;
  return out;
}

export function scheduleView(r: ScheduleRow, recent: ScheduleRunRow[]): ScheduleView {
  return {
    id: r.id,
    name: r.name,
    cron: r.cron,
    timezone: r.timezone,
    enabled: r.enabled,
    catchUp: r.catch_up,
    overlap: r.overlap,
    session: r.session,
    nextRunAt: iso(r.next_run_at),
    lastRunAt: iso(r.last_run_at),
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    recent: recent.map((s) => ({
      id: s.id,
      status: s.status,
      scheduledFor: s.scheduled_for.toISOString(),
      createdAt: s.created_at.toISOString(),
      finishedAt: iso(s.finished_at),
      errorMessage: s.error_message,
    })),
  };
}

export function runnerView(r: RunnerRow, liveWithinMs: number): RunnerView {
  return {
    runnerId: r.runner_id,
    status: r.status,
    live: r.status !== 'stopped' && r.heartbeat_age_ms <= liveWithinMs,
    lastHeartbeat: r.last_heartbeat.toISOString(),
    heartbeatAgeMs: r.heartbeat_age_ms,
    activeSessions: r.active_sessions,
    runningSessions: r.running_sessions,
    maxConcurrency: r.max_concurrency,
    effectiveConcurrency: r.effective_concurrency,
    totalSessionsExecuted: r.total_sessions_executed,
    totalFailures: r.total_failures,
    uptimeSeconds: r.uptime_seconds,
    startedAt: r.started_at.toISOString(),
    hostname: r.hostname,
    version: r.version,
    memoryRssBytes: r.memory_rss_bytes,
    browserMemoryBytes: r.browser_memory_bytes,
    types: r.types,
  };
}

/**
 * Registrations (each type's winner first, as listTypeRegistrations orders them) → one view per type, the
 * built-in ones always there. Runners gone from the fleet view are not listed; their schema may still apply.
 */
export function sessionTypeViews(
  rows: TypeRegistrationRow[],
  schemas: Map<string, Record<string, unknown>>,
  builtIn: ReadonlySet<string>,
): SessionTypeView[] {
  const byType = new Map<string, TypeRegistrationRow[]>();
  for (const name of builtIn) byType.set(name, []);
  for (const r of rows) {
    const list = byType.get(r.type);
    if (list) list.push(r);
    else byType.set(r.type, [r]);
  }
  const out: SessionTypeView[] = [];
  for (const [name, regs] of byType) {
    const isBuiltIn = builtIn.has(name);
    const winner = isBuiltIn ? undefined : regs[0];
    const hash = winner?.schema_hash ?? null;
    const view: SessionTypeView = {
      name,
      schema: hash === null ? null : (schemas.get(hash) ?? null),
      schemaHash: hash,
      builtIn: isBuiltIn,
      runners: regs
        .filter((r) => r.listed && r.runner_status !== null)
        .map((r) => ({
          id: r.runner_id,
          status: r.runner_status ?? 'stopped',
          live: r.live,
          registeredAt: r.registered_at.toISOString(),
          schemaHash: r.schema_hash,
        })),
    };
    const note = isBuiltIn ? 'built in: the API checks its input with its own rules' : winner?.note;
    if (note) view.note = note;
    // The defaults enqueue applies: the same registration's as the schema.
    if (winner?.timeout_ms != null) view.timeoutMs = winner.timeout_ms;
    if (winner?.max_attempts != null) view.maxAttempts = winner.max_attempts;
    const live = new Map<string | null, string[]>();
    for (const r of regs.filter((x) => x.live))
      live.set(r.schema_hash, [...(live.get(r.schema_hash) ?? []), r.runner_id]);
    if (!isBuiltIn && live.size > 1)
      view.conflict = {
        message: `live runners registered ${live.size} different input schemas for ${name}: the newest (${hash === null ? 'none' : hash.slice(0, 12)}) is checked at enqueue`,
        schemas: [...live].map(([schemaHash, runners]) => ({ schemaHash, runners })),
      };
    out.push(view);
  }
  return out.sort((a, b) => Number(b.builtIn) - Number(a.builtIn) || a.name.localeCompare(b.name));
}
