import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, BrowserContextOptions, ConsoleMessage, Page } from 'playwright-core';
import type { ArtifactMode } from '../core/types.js';
import type { BrowserOptions, ClaimedSession } from '../protocol/schemas.js';
import type { FlowResult, FlowSessionInput } from '../protocol/flow.js';
import { storableJson, stripAnsi } from '../protocol/text.js';
import { logFn, type LogFn, type LogSink } from '../browser/log.js';
import type { BrowserLease, BrowserPool } from '../browser/pool.js';
import { contextLiveSource, type LiveSource, type RevocableLiveSource } from '../browser/live.js';
import { FlowStepError, runFlow, type FlowOptions } from './flow.js';
import { createRedactor, redactJson, type Redact } from './redact.js';
import type { SessionType } from './registry.js';
import { watchBackoff } from './backoff.js';
import type { SessionStateAccess, StorageState } from '../protocol/states.js';
import { DEFAULT_CAPTURE_SETTINGS, SessionCapture, type CaptureSettings } from './capture.js';

export type ExecutionStatus = 'succeeded' | 'failed' | 'error' | 'cancelled';

export interface ExecutionOutcome {
  status: ExecutionStatus;
  result?: unknown;
  errorMessage?: string;
}

export interface ExecuteOptions {
  session: ClaimedSession;
  type: SessionType;
  /** Needed by browser session types. */
  pool?: BrowserPool;
  /**
   * The session's one abort signal. Aborted by the runner (cancellation, forced shutdown): the outcome is
   * `cancelled`; aborted through `abort` by the session's own timeout: the outcome is `failed`.
   */
  signal: AbortSignal;
  /** Aborts `signal` for the session's timeout, which does not count as the runner's abort. */
  abort(reason: Error): void;
  upload(name: string, data: Buffer, contentType: string): Promise<void>;
  /** The session's named state through the API (needed when the session has `state`). */
  state?: SessionStateAccess;
  /** Told when a navigation is answered 429/503 with Retry-After (see backoff.ts). */
  backoff?: (retryAfterMs: number, info: { status: number; url: string }) => void;
  /** Given the session's page to watch live once its context is leased, and undefined before it goes. */
  live?: (source: LiveSource | undefined) => void;
  log?: LogSink;
  /** Limits and the video recorder of HAR, video and downloads (default: 50 MiB a file, 20 downloads, detected). */
  capture?: CaptureSettings;
  flow?: {
    allowEvaluate?: boolean;
    checkUrl?: (url: string) => void;
    defaultStepTimeoutMs?: number;
    onStep?: FlowOptions['onStep'];
  };
}

type Upload = (name: string, data: Buffer, contentType: string) => Promise<void>;

const ARTIFACT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
const ARTIFACT_STEP_TIMEOUT_MS = 10_000;
const CONSOLE_MAX_LINES = 5000;
const CONSOLE_MAX_BYTES = 1 << 20;

/** Whether the session's own timeout fired (and with what reason). */
interface TimeoutState {
  aborted: boolean;
  reason: unknown;
}

class TimeoutAbort extends Error {
  constructor(ms: number) {
    super(`timed out after ${ms} ms`);
  }
}

class BrowserGone extends Error {}

function wants(mode: ArtifactMode, failed: boolean): boolean {
  return mode === 'always' || (mode === 'on-failure' && failed);
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return typeof err === 'string' ? err : 'the session threw a non-Error value';
}

/** Rejects when `signal` aborts; never resolves. */
function rejectOnAbort(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  let onAbort = () => {};
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => {});
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}

/** Console and page-error lines of a session, bounded. */
class ConsoleLines {
  readonly lines: string[] = [];
  private bytes = 0;
  private dropped = 0;

  constructor(private readonly redact: Redact) {}

  add(raw: string): void {
    if (this.lines.length >= CONSOLE_MAX_LINES || this.bytes + raw.length > CONSOLE_MAX_BYTES) {
      this.dropped++;
      return;
    }
    const line = this.redact(raw);
    this.lines.push(line);
    this.bytes += line.length + 1;
  }

  text(): string {
    const tail = this.dropped > 0 ? [`… ${this.dropped} more lines not kept`] : [];
    return [...this.lines, ...tail].join('\n') + '\n';
  }
}

/** Waits for `work` but gives up after `ms` (artifact capture must never hold a session). */
async function bounded<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([work.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs one claimed session to an outcome: validates its input, leases a browser context, runs the flow
 * or the code session under the session's timeout, records artifacts, and always releases the context.
 * Statuses: a throw or the timeout → `failed`; the browser crashing → `error`; the runner's signal →
 * `cancelled`. Artifact uploads never change the outcome. What leaves (the error message, a flow's step
 * results, the session's log lines) carries no secret of the input (src/sessions/redact.ts) and no
 * terminal colour codes.
 */
export async function executeSession(opts: ExecuteOptions): Promise<ExecutionOutcome> {
  const redact = createRedactor(opts.session.input);
  return outgoing(await execute(opts, redact), redact, opts.type.kind === 'flow');
}

function outgoing(outcome: ExecutionOutcome, redact: Redact, flow: boolean): ExecutionOutcome {
  const out: ExecutionOutcome = { ...outcome };
  if (out.errorMessage !== undefined) out.errorMessage = redact(stripAnsi(out.errorMessage));
  const result = out.result as FlowResult | undefined;
  if (flow && result && Array.isArray(result.steps)) {
    out.result = {
      ...result,
      steps: result.steps.map((s) => (s.error === undefined ? s : { ...s, error: redact(s.error) })),
    };
  }
  return out;
}

async function execute(opts: ExecuteOptions, redact: Redact): Promise<ExecutionOutcome> {
  const { session, type, signal } = opts;
  const log: LogFn = logFn(opts.log);
  if (signal.aborted) return { status: 'cancelled', errorMessage: 'cancelled before it started' };

  let input: unknown;
  try {
    input = type.validateInput(session.input);
  } catch (err) {
    return { status: 'failed', errorMessage: `invalid input: ${messageOf(err)}` };
  }

  // One signal for the session: the runner's abort or the session's timeout, whichever comes first
  // (`timeout` tells which: it is set only when the timeout fired, before the signal aborts).
  const timeoutMs = session.timeoutMs;
  const timeout: TimeoutState = { aborted: false, reason: undefined };
  // Aborted by the runner (cancel, shutdown), not by the timeout.
  const runnerAborted = () => signal.aborted && !timeout.aborted;
  const timer = setTimeout(() => {
    if (signal.aborted) return; // the runner was first
    const reason = new TimeoutAbort(timeoutMs);
    timeout.aborted = true;
    timeout.reason = reason;
    opts.abort(reason);
  }, timeoutMs);
  const consoleLines = new ConsoleLines(redact);
  const upload: Upload = async (name, data, contentType) => {
    if (!ARTIFACT_NAME.test(name)) {
      log(
        'artifact skipped: bad name (letters, digits, ".", "_", "-")',
        { sessionId: session.id, name },
        'warn',
      );
      return;
    }
    try {
      await opts.upload(name, data, contentType);
    } catch (err) {
      log('artifact upload failed', { sessionId: session.id, name, error: messageOf(err) }, 'warn');
    }
  };

  const start = await startingState(opts, log);
  if ('outcome' in start) {
    clearTimeout(timer);
    return start.outcome;
  }

  let lease: BrowserLease | undefined;
  let capture: SessionCapture | undefined;
  let live: RevocableLiveSource | undefined;
  try {
    if (type.browser) {
      if (!opts.pool)
        return { status: 'error', errorMessage: 'this runner has no browser for this session type' };
      capture = await SessionCapture.prepare(
        session.artifactOptions,
        opts.capture ?? DEFAULT_CAPTURE_SETTINGS,
        session.browser?.viewport,
      );
      const aborted = rejectOnAbort(signal);
      try {
        lease = await Promise.race([
          opts.pool.acquire(acquireOptions(session, type, start.storageState, capture?.contextOptions())),
          aborted.promise,
        ]);
      } catch (err) {
        if (runnerAborted()) return { status: 'cancelled', errorMessage: messageOf(signal.reason) };
        if (timeout.aborted) return { status: 'failed', errorMessage: messageOf(timeout.reason) };
        return { status: 'error', errorMessage: `browser unavailable: ${messageOf(err)}` };
      } finally {
        aborted.dispose();
      }
      if (lease && opts.live) {
        live = contextLiveSource(lease.context);
        opts.live(live);
      }
    }
    return await runWithLease({
      opts,
      input,
      lease,
      timeout,
      consoleLines,
      upload,
      log,
      redact,
      seenVersion: start.seenVersion,
      capture,
    });
  } finally {
    clearTimeout(timer);
    // A session the runner aborted is cancelled or handed back: its artifacts would only delay that.
    if (consoleLines.lines.length > 0 && !runnerAborted()) {
      await bounded(
        upload('console.log', Buffer.from(consoleLines.text()), 'text/plain; charset=utf-8'),
        ARTIFACT_STEP_TIMEOUT_MS,
      );
    }
    // Nobody watches the context once it is another session's (a kept one is reused).
    if (live) {
      opts.live?.(undefined);
      await bounded(live.close(), ARTIFACT_STEP_TIMEOUT_MS);
    }
    // The outcome does not wait for the context to close (or be cleared for reuse); the capture's files
    // go once it has.
    const released = lease ? bounded(lease.release(), ARTIFACT_STEP_TIMEOUT_MS) : Promise.resolve();
    const held = capture;
    if (held) void released.then(() => held.dispose()).catch(() => {});
  }
}

/**
 * How the session's context is made: with its own browser options a fresh context gets them (a reused
 * context keeps the options it was made with, so such a session does not reuse one).
 */
function acquireOptions(
  session: ClaimedSession,
  type: SessionType,
  storageState?: StorageState,
  captureOptions?: BrowserContextOptions,
): { reuseContext?: string; contextOptions?: BrowserContextOptions } {
  const own = contextOptions(session.browser ?? undefined);
  // A HAR or Playwright's video is recorded by a context made for it.
  const options = captureOptions ? { ...own, ...captureOptions } : own;
  // A named state starts a fresh context (never a kept or pre-warmed one, which has its own cookies).
  if (storageState)
    return {
      contextOptions: { ...options, storageState: storageState as BrowserContextOptions['storageState'] },
    };
  if (options) return { contextOptions: options };
  return type.reuseContext ? { reuseContext: type.name } : {};
}

/**
 * A session's browser options as Playwright's newContext options; undefined when it has none. A proxy
 * is not given to Chromium as it is: the pool chains it behind the runner's egress proxy (contexts.ts).
 */
export function contextOptions(b: BrowserOptions | undefined): BrowserContextOptions | undefined {
  if (!b) return undefined;
  const out: BrowserContextOptions = {};
  if (b.viewport) out.viewport = { width: b.viewport.width, height: b.viewport.height };
  if (b.locale !== undefined) out.locale = b.locale;
  if (b.timezoneId !== undefined) out.timezoneId = b.timezoneId;
  if (b.userAgent !== undefined) out.userAgent = b.userAgent;
  if (b.extraHTTPHeaders) out.extraHTTPHeaders = { ...b.extraHTTPHeaders };
  if (b.javaScriptEnabled !== undefined) out.javaScriptEnabled = b.javaScriptEnabled;
  if (b.proxy) {
    out.proxy = { server: b.proxy.server };
    if (b.proxy.username !== undefined) out.proxy.username = b.proxy.username;
    if (b.proxy.password !== undefined) out.proxy.password = b.proxy.password;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** One session's run once its input is valid and its browser context (if any) leased. */
interface LeasedRun {
  opts: ExecuteOptions;
  input: unknown;
  lease: BrowserLease | undefined;
  timeout: TimeoutState;
  consoleLines: ConsoleLines;
  upload: Upload;
  log: LogFn;
  redact: Redact;
  /** The version of `state.save`'s name this session started from, if it used that name. */
  seenVersion: number | undefined;
  capture: SessionCapture | undefined;
}

async function runWithLease(run: LeasedRun): Promise<ExecutionOutcome> {
  const { opts, input, lease, timeout, consoleLines, upload, log, redact } = run;
  const { session, type, signal } = opts;
  const page = lease?.page;
  const context = lease?.context;
  const detachConsole = context ? watchConsole(context, consoleLines) : () => {};
  const detachBackoff = page && opts.backoff ? watchBackoff(page, opts.backoff) : () => {};
  const detach = () => {
    detachConsole();
    detachBackoff();
  };
  const capture = page && context ? run.capture : undefined;
  if (capture && page && context) await capture.attach(page, context);
  const traceMode = session.artifactOptions.trace;
  let tracing = false;
  if (context && traceMode !== 'off') {
    try {
      await context.tracing.start({ screenshots: true, snapshots: true, sources: false });
      tracing = true;
    } catch (err) {
      log('trace not started', { sessionId: session.id, error: messageOf(err) }, 'warn');
    }
  }
  const userLog = (message: string, data?: Record<string, unknown>) => {
    consoleLines.add(`${new Date().toISOString()} log: ${message}${data ? ` ${safeJson(data)}` : ''}`);
    log(redact(message), { sessionId: session.id, ...(data ? redactedData(data, redact) : {}) });
  };
  const artifacts = {
    add: (name: string, data: Buffer, contentType = 'application/octet-stream') =>
      upload(name, data, contentType),
  };

  const base = { input, signal, log: userLog, attempt: session.attempt, sessionId: session.id, artifacts };
  const gone = browserGone(page, context);
  const aborted = rejectOnAbort(signal);
  let outcome: ExecutionOutcome;
  try {
    const work =
      type.kind === 'flow'
        ? runFlow(page!, input as FlowSessionInput, {
            signal,
            ...(opts.flow?.allowEvaluate !== undefined ? { allowEvaluate: opts.flow.allowEvaluate } : {}),
            ...(opts.flow?.checkUrl ? { checkUrl: opts.flow.checkUrl } : {}),
            ...(opts.flow?.defaultStepTimeoutMs !== undefined
              ? { defaultStepTimeoutMs: opts.flow.defaultStepTimeoutMs }
              : {}),
            ...(opts.flow?.onStep ? { onStep: opts.flow.onStep } : {}),
            onScreenshot: (name, png) => upload(/\.\w+$/.test(name) ? name : `${name}.png`, png, 'image/png'),
          })
        : type.run(page && context ? { page, context, ...base } : base);
    work.catch(() => {});
    const result = await Promise.race([work, aborted.promise, gone.promise]);
    // A flow's result is storable already, with warnings in it; a code session's shape is its own.
    const stored = storableJson(toJson(result));
    if (stored.replaced > 0) {
      const note = `${stored.replaced} character${stored.replaced === 1 ? '' : 's'} of the result replaced with U+FFFD (NUL or half of a UTF-16 pair, which cannot be stored)`;
      consoleLines.add(`${new Date().toISOString()} sfw: ${note}`);
      log(note, { sessionId: session.id }, 'warn');
    }
    outcome = { status: 'succeeded', result: stored.value };
  } catch (err) {
    outcome = classify(err, signal, timeout, lease);
  } finally {
    aborted.dispose();
    gone.dispose();
    detach();
  }

  if (outcome.status === 'succeeded' && session.state?.save !== undefined && context && !lease?.crashed)
    outcome = await saveState(opts, context, outcome, run.seenVersion, type.kind === 'flow');

  if (page && context && outcome.status !== 'cancelled' && !lease?.crashed) {
    const failed = outcome.status !== 'succeeded';
    if (wants(session.artifactOptions.screenshot, failed)) {
      const png = await bounded(
        page.screenshot({ timeout: ARTIFACT_STEP_TIMEOUT_MS, type: 'png' }),
        ARTIFACT_STEP_TIMEOUT_MS,
      );
      if (png) await upload(failed ? 'failure.png' : 'final.png', png, 'image/png');
    }
    if (tracing) await finishTrace(context, wants(traceMode, failed), upload, log, session.id);
    if (capture)
      outcome = await finishCapture(capture, lease, failed, outcome, upload, consoleLines, log, session.id);
  }
  return outcome;
}

/**
 * Keeps the session's HAR, video and downloads as its modes say, once the files are complete (the
 * context closed, for a HAR or Playwright's video); what was not kept becomes a warning: in the result's
 * `warnings` when the result is an object (a flow's always is), and in console.log.
 */
async function finishCapture(
  capture: SessionCapture,
  lease: BrowserLease | undefined,
  failed: boolean,
  outcome: ExecutionOutcome,
  upload: Upload,
  consoleLines: ConsoleLines,
  log: LogFn,
  sessionId: string,
): Promise<ExecutionOutcome> {
  await bounded(capture.beforeClose(), 20_000);
  if (capture.needsClose && lease) await bounded(lease.release(), ARTIFACT_STEP_TIMEOUT_MS);
  const warnings = (await bounded(capture.upload(failed, upload), 30_000)) ?? [
    ...capture.warnings,
    'capture not uploaded in time',
  ];
  if (warnings.length === 0) return outcome;
  for (const w of warnings) {
    consoleLines.add(`${new Date().toISOString()} sfw: ${w}`);
    log(w, { sessionId }, 'warn');
  }
  const result = outcome.result;
  if (result === null || typeof result !== 'object' || Array.isArray(result)) return outcome;
  const prior = (result as { warnings?: unknown }).warnings;
  if (prior !== undefined && !Array.isArray(prior)) return outcome;
  return {
    ...outcome,
    result: { ...result, warnings: [...((prior as unknown[] | undefined) ?? []), ...warnings] },
  };
}

/**
 * The storage state the session's context starts from (`state.use`), or the outcome that ends the session
 * before it starts: a state that is missing fails it, unless the session saves the same name (its first
 * run, which logs in); a state the API cannot give (a wrong STATE_ENCRYPTION_KEY, the API unreachable) is
 * an `error`. `state` on a type without a browser fails the session.
 */
async function startingState(
  opts: ExecuteOptions,
  log: LogFn,
): Promise<{ storageState?: StorageState; seenVersion?: number } | { outcome: ExecutionOutcome }> {
  const { session, type } = opts;
  const state = session.state ?? undefined;
  if (!state) return {};
  if (!type.browser)
    return {
      outcome: {
        status: 'failed',
        errorMessage: `state (named states) needs a browser context: session type ${type.name} runs without a browser`,
      },
    };
  if (state.use === undefined) return {};
  if (!opts.state)
    return { outcome: { status: 'error', errorMessage: 'this runner cannot read named states' } };
  try {
    const loaded = await opts.state.load();
    if (loaded.outcome === 'found')
      return {
        storageState: loaded.storageState,
        ...(state.save === state.use ? { seenVersion: loaded.version } : {}),
      };
    if (loaded.outcome === 'lease-lost')
      return { outcome: { status: 'error', errorMessage: 'lease lost before the session started' } };
    if (state.save === state.use) {
      log(`state "${state.use}" does not exist yet: starting empty`, { sessionId: session.id });
      return {};
    }
    return { outcome: { status: 'failed', errorMessage: loaded.message } };
  } catch (err) {
    return {
      outcome: { status: 'error', errorMessage: `state "${state.use}" not loaded: ${messageOf(err)}` },
    };
  }
}

/**
 * Saves the context's storage state under `state.save` once the session succeeded. A save skipped for a
 * newer version keeps the session succeeded (a flow's result says so in `warnings`); a save that fails
 * makes it an `error` (the result stays), so the next session never starts from a state older than the
 * caller believes. A lost lease changes nothing: the completion is refused as well.
 */
async function saveState(
  opts: ExecuteOptions,
  context: BrowserContext,
  outcome: ExecutionOutcome,
  seenVersion: number | undefined,
  flow: boolean,
): Promise<ExecutionOutcome> {
  const name = opts.session.state?.save ?? '';
  const failed = (why: string): ExecutionOutcome => ({
    ...outcome,
    status: 'error',
    errorMessage: `state "${name}" not saved: ${why}`,
  });
  if (!opts.state) return failed('this runner cannot save named states');
  try {
    const storageState = (await bounded(context.storageState(), ARTIFACT_STEP_TIMEOUT_MS)) as
      StorageState | undefined;
    if (!storageState) return failed('the browser did not give its storage state in time');
    const saved = await opts.state.save(storageState, seenVersion);
    if (saved.outcome !== 'skipped' || !flow) return outcome;
    const result = outcome.result as FlowResult | null;
    if (!result || typeof result !== 'object') return outcome;
    return {
      ...outcome,
      result: { ...result, warnings: [...(result.warnings ?? []), saved.save.message ?? ''] },
    };
  } catch (err) {
    return failed(messageOf(err));
  }
}

function classify(
  err: unknown,
  runnerSignal: AbortSignal,
  timeoutSignal: TimeoutState,
  lease: BrowserLease | undefined,
): ExecutionOutcome {
  if (runnerSignal.aborted && !timeoutSignal.aborted) {
    const reason: unknown = runnerSignal.reason;
    return { status: 'cancelled', errorMessage: reason instanceof Error ? reason.message : 'cancelled' };
  }
  if (timeoutSignal.aborted) return { status: 'failed', errorMessage: messageOf(timeoutSignal.reason) };
  if (err instanceof BrowserGone || lease?.crashed) {
    return { status: 'error', errorMessage: `browser crashed or disconnected: ${messageOf(err)}` };
  }
  if (err instanceof FlowStepError)
    return { status: 'failed', errorMessage: err.message, result: err.result };
  return { status: 'failed', errorMessage: messageOf(err) };
}

/** Rejects when the page's renderer crashes or its context closes under the session. */
function browserGone(
  page: Page | undefined,
  context: BrowserContext | undefined,
): { promise: Promise<never>; dispose(): void } {
  let dispose = () => {};
  const promise = new Promise<never>((_, reject) => {
    if (!page || !context) return;
    const onCrash = () => reject(new BrowserGone('the page crashed'));
    const onClose = () => reject(new BrowserGone('the browser closed'));
    page.once('crash', onCrash);
    context.once('close', onClose);
    dispose = () => {
      page.off('crash', onCrash);
      context.off('close', onClose);
    };
  });
  promise.catch(() => {});
  return { promise, dispose: () => dispose() };
}

const FAVICON = /^https?:\/\/[^/]+\/favicon\.ico$/;

function watchConsole(context: BrowserContext, lines: ConsoleLines): () => void {
  const onConsole = (msg: ConsoleMessage) => {
    // Chromium asks every site for /favicon.ico by itself: its 404 is not output of the session.
    if (msg.type() === 'error' && FAVICON.test(msg.location().url)) return;
    lines.add(`${new Date().toISOString()} console.${msg.type()}: ${msg.text()}`);
  };
  const onError = (error: { error(): Error }) => {
    const e = error.error();
    lines.add(`${new Date().toISOString()} pageerror: ${e.message || String(e)}`);
  };
  context.on('console', onConsole);
  context.on('weberror', onError);
  return () => {
    context.off('console', onConsole);
    context.off('weberror', onError);
  };
}

async function finishTrace(
  context: BrowserContext,
  keep: boolean,
  upload: Upload,
  log: LogFn,
  sessionId: string,
): Promise<void> {
  if (!keep) {
    await bounded(context.tracing.stop(), ARTIFACT_STEP_TIMEOUT_MS);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'sfw-trace-'));
  try {
    const path = join(dir, 'trace.zip');
    const stopped = await bounded(
      context.tracing.stop({ path }).then(() => true),
      30_000,
    );
    if (!stopped) {
      log('trace not saved', { sessionId }, 'warn');
      return;
    }
    await upload('trace.zip', await readFile(path), 'application/zip');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The result travels as JSON: make that explicit, so a bad value fails here with a clear message. */
function toJson(result: unknown): unknown {
  if (result === undefined) return null;
  let text: string | undefined;
  try {
    text = JSON.stringify(result);
  } catch (err) {
    throw new Error(`the session's result is not JSON-serializable: ${messageOf(err)}`);
  }
  return text === undefined ? null : (JSON.parse(text) as unknown);
}

/** Logged data without the session's secrets (as JSON: what a log line can carry anyway). */
function redactedData(data: Record<string, unknown>, redact: Redact): Record<string, unknown> {
  if (!redact.active) return data;
  try {
    return redactJson(JSON.parse(JSON.stringify(data)) as Record<string, unknown>, redact);
  } catch {
    return { data: '[unserializable]' };
  }
}

function safeJson(data: unknown): string {
  try {
    return JSON.stringify(data);
  } catch {
    return '[unserializable]';
  }
}
