import type { BrowserContext, Page } from 'playwright-core';
import { ValidationError } from '../core/errors.js';
import { MAX_ATTEMPTS_RANGE, SESSION_TIMEOUT_MS_RANGE } from '../core/types.js';

/** A zod schema (v3 or v4), or anything else with the same `safeParse` shape. */
export interface ZodLikeSchema<T = unknown> {
  safeParse(data: unknown):
    | { success: true; data: T }
    | {
        success: false;
        error: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> };
      };
}

/**
 * The parsed input a schema gives: a Standard Schema's output type (zod 3.24+ and 4, through
 * `~standard.types`), else what a zod-like `safeParse` returns; `unknown` for anything else (a JSON schema).
 */
export type SchemaOutput<S> = S extends { readonly '~standard': { readonly types?: infer T } }
  ? NonNullable<T> extends { readonly output: infer O }
    ? O
    : unknown
  : S extends ZodLikeSchema<infer T>
    ? T
    : unknown;

/** A JSON schema (draft 2020-12 / 07), validated with ajv. */
export type JsonSchema = Record<string, unknown> & {
  type?: unknown;
  properties?: unknown;
  $schema?: string;
};

export interface SessionArtifacts {
  /** Stores a file with the session (e.g. a screenshot); names: letters, digits, `.`, `_`, `-`. */
  add(name: string, data: Buffer, contentType?: string): Promise<void>;
}

interface RunContextBase<I> {
  input: I;
  /** Aborted on timeout, cancellation or runner shutdown: stop work and return or throw. */
  signal: AbortSignal;
  log: (message: string, data?: Record<string, unknown>) => void;
  /** 1 on the first try, 2 on the first retry… */
  attempt: number;
  sessionId: string;
  artifacts: SessionArtifacts;
}

/** What `run` gets in a browser session: a fresh page and its context. */
export interface SessionRunContext<I = unknown> extends RunContextBase<I> {
  page: Page;
  context: BrowserContext;
}

/** What `run` gets in a `browser: false` session: no page, no context. */
export interface NoBrowserRunContext<I = unknown> extends RunContextBase<I> {
  page?: undefined;
  context?: undefined;
}

interface DefinitionBase {
  /** Session type name: what clients pass as `type` when they enqueue. */
  name: string;
  /** Checked before `run`; bad input fails the session with the field path. */
  input?: ZodLikeSchema | JsonSchema;
  /**
   * Default timeout of sessions of this type when the enqueuer gives none (100 to 86,400,000 ms): the
   * runner registers it with the type and the API applies it at enqueue.
   */
  timeoutMs?: number;
  /** Default attempts of sessions of this type when the enqueuer gives none (1 to 100), applied the same way. */
  maxAttempts?: number;
}

export interface BrowserSessionDefinition<I = unknown, R = unknown> extends DefinitionBase {
  browser?: true;
  /** Keep one context and page for this type, cleared (cookies, storage, permissions) between sessions. */
  reuseContext?: boolean;
  run(ctx: SessionRunContext<I>): Promise<R> | R;
}

export interface NoBrowserSessionDefinition<I = unknown, R = unknown> extends DefinitionBase {
  browser: false;
  reuseContext?: false;
  run(ctx: NoBrowserRunContext<I>): Promise<R> | R;
}

export type SessionDefinition<I = unknown, R = unknown> =
  BrowserSessionDefinition<I, R> | NoBrowserSessionDefinition<I, R>;

export const SESSION_DEFINITION = Symbol.for('session-framework.session-definition');

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/;

/**
 * Declares a session type. A module in SESSIONS_DIR default-exports the result:
 *
 *   export default defineSession({ name: 'login-check', input: z.object({ user: z.string() }),
 *     async run({ page, input }) { await page.goto('https://example.com'); return { ok: true }; } });
 *
 * With a zod schema as `input`, `run` gets `input` typed from it (here `{ user: string }`).
 */
export function defineSession<S extends ZodLikeSchema, R = unknown>(
  def: NoBrowserSessionDefinition<SchemaOutput<S>, R> & { input: S },
): NoBrowserSessionDefinition<SchemaOutput<S>, R>;
export function defineSession<S extends ZodLikeSchema, R = unknown>(
  def: BrowserSessionDefinition<SchemaOutput<S>, R> & { input: S },
): BrowserSessionDefinition<SchemaOutput<S>, R>;
// Without a zod schema (none, or a JSON schema): `input` is `unknown`, or the type given as `I`.
export function defineSession<I = unknown, R = unknown>(
  def: NoBrowserSessionDefinition<I, R>,
): NoBrowserSessionDefinition<I, R>;
export function defineSession<I = unknown, R = unknown>(
  def: BrowserSessionDefinition<I, R>,
): BrowserSessionDefinition<I, R>;
export function defineSession<I, R>(def: SessionDefinition<I, R>): SessionDefinition<I, R> {
  checkDefinition(def);
  Object.defineProperty(def, SESSION_DEFINITION, { value: true, enumerable: false });
  return def;
}

/** Throws a ValidationError naming the first bad field of a session definition. */
export function checkDefinition(def: unknown): asserts def is SessionDefinition {
  if (typeof def !== 'object' || def === null) {
    throw new ValidationError('definition', 'must be an object passed to defineSession({ name, run })');
  }
  const d = def as Record<string, unknown>;
  if (typeof d.name !== 'string' || !NAME_PATTERN.test(d.name)) {
    throw new ValidationError(
      'name',
      'must be 1-100 characters: letters, digits, ".", "_", ":", "-", starting with a letter or digit',
    );
  }
  if (typeof d.run !== 'function') throw new ValidationError('run', 'must be a function');
  if (d.browser !== undefined && typeof d.browser !== 'boolean') {
    throw new ValidationError('browser', 'must be true or false');
  }
  if (d.reuseContext !== undefined && typeof d.reuseContext !== 'boolean') {
    throw new ValidationError('reuseContext', 'must be true or false');
  }
  if (d.browser === false && d.reuseContext === true) {
    throw new ValidationError('reuseContext', 'needs a browser: remove browser: false or reuseContext');
  }
  // The API's bounds for a session's own (what it registers must be what enqueue would take).
  for (const [field, { min, max }] of [
    ['timeoutMs', SESSION_TIMEOUT_MS_RANGE],
    ['maxAttempts', MAX_ATTEMPTS_RANGE],
  ] as const) {
    const v = d[field];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)) {
      throw new ValidationError(field, `must be an integer from ${min} to ${max}`);
    }
  }
  if (d.input !== undefined && (typeof d.input !== 'object' || d.input === null)) {
    throw new ValidationError('input', 'must be a zod schema or a JSON schema object');
  }
}
