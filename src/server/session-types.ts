import { createHash } from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { ValidationError } from '../core/errors.js';
import type { EventLog } from '../core/log.js';
import { findUnstorable } from '../protocol/text.js';
import { TYPE_SCHEMA_MAX_BYTES, type SessionTypeRegistration } from '../protocol/schemas.js';
import type { Db } from '../store/db.js';
import type { Notifier } from '../store/notify.js';
import {
  runnersWithTypeRegistrations,
  resolveTypes,
  typeSchemaByHash,
  type ResolvedType,
  type TypeRegistration,
  type TypeWindows,
} from '../store/types.js';

/**
 * Input schemas and defaults of registered session types, on the API side: registrations are checked
 * (size, a schema ajv compiles), enqueued input is validated against the schema its type has by the
 * store's rule, with one compiled validator per schema hash, and a session without `timeoutMs` or
 * `maxAttempts` gets its type's. The built-in `flow` keeps its own checks (checkFlowInput).
 */

export const BUILT_IN_TYPES = new Set(['flow']);
/** Compiled validators kept per replica (each a few kilobytes); the oldest leaves first. */
const MAX_VALIDATORS = 1000;
/** How long a replica trusts that a runner's registration is in the database before looking again. */
const REGISTERED_TTL_MS = 5 * 60_000;
/** A runner found without a registration is asked to register again at most this often. */
const ASK_AGAIN_MS = 30_000;
/** How long a look for runners' registrations gathers the runners asked before it queries. */
const LOOK_GATHER_MS = 20;
/**
 * How long a replica uses what it looked up for a type (schema hash, defaults), while notifications are connected (a
 * registration anywhere clears it at once; this bounds the wait for a runner that stopped or went quiet).
 * Without notifications every enqueue looks.
 */
const RESOLVED_TTL_MS = 2000;

/**
 * Ajv instances for the two drafts runners send (zod 4 writes 2020-12), with and without defaults: a schema
 * with `default`s is checked as the runner checks it (defaults filled in first, which a `required` field with
 * a default needs), on a copy, so the input stored is the one sent.
 */
const OPTIONS = {
  allErrors: false,
  strict: false,
  coerceTypes: false,
  logger: false,
} as const;
const instances = new Map<string, Ajv | Ajv2020>();

function ajvFor(schema: Record<string, unknown>, useDefaults: boolean): Ajv | Ajv2020 {
  const version = schema.$schema;
  const draft = typeof version === 'string' && version.includes('2020-12') ? '2020-12' : 'draft-07';
  if (
    draft === 'draft-07' &&
    version !== undefined &&
    !(typeof version === 'string' && /draft-07/.test(version))
  )
    throw new Error(
      `$schema ${JSON.stringify(version).slice(0, 80)} is not supported: use JSON Schema draft 2020-12 or draft-07`,
    );
  const key = `${draft}:${useDefaults}`;
  let ajv = instances.get(key);
  if (!ajv) {
    ajv =
      draft === '2020-12' ? new Ajv2020({ ...OPTIONS, useDefaults }) : new Ajv({ ...OPTIONS, useDefaults });
    addFormats.default(ajv);
    // zod's url() (written as format "uri", with no pattern) accepts what WHATWG URL parses, international
    // hosts included, where ajv-formats' RFC 3986 check is ASCII-only: the API checks the looser rule, so it
    // never refuses an input the runner's own schema accepts (the runner still checks its schema itself).
    ajv.addFormat('uri', { type: 'string', validate: (s: string) => URL.canParse(s) });
    instances.set(key, ajv);
  }
  return ajv;
}

/** A compiled schema; `copy`: it fills in defaults, so it validates a copy of the input. */
interface InputCheck {
  validate: ValidateFunction;
  copy: boolean;
}

/** Canonical JSON (keys sorted at every level): the same schema hashes the same whatever its key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj)
      .sort()
      .filter((k) => obj[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

export function schemaHash(schema: Record<string, unknown>): string {
  return createHash('sha256').update(canonical(schema)).digest('hex');
}

/** The first problem of a validation, as a dotted path under `at` (e.g. body.input.url) and a message. */
export function firstProblem({ validate }: Pick<InputCheck, 'validate'>, at: string): ValidationError {
  const err = validate.errors?.[0];
  if (!err) return new ValidationError(at, 'is invalid');
  const parts = err.instancePath
    .split('/')
    .filter(Boolean)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const params = err.params as { missingProperty?: string; additionalProperty?: string };
  if (err.keyword === 'required' && params.missingProperty !== undefined) {
    parts.push(params.missingProperty);
    return new ValidationError([at, ...parts].join('.'), 'is required');
  }
  if (err.keyword === 'additionalProperties' && params.additionalProperty !== undefined) {
    parts.push(params.additionalProperty);
    return new ValidationError([at, ...parts].join('.'), 'is not a known field');
  }
  return new ValidationError([at, ...parts].join('.'), err.message ?? 'is invalid');
}

/** The type's registered defaults a session takes where it gives none (store: NewSession.typeDefaults). */
export interface TypeDefaults {
  timeoutMs?: number;
  maxAttempts?: number;
}

/**
 * A session carrying its type's defaults as `typeDefaults` (the same object when the type has none): the
 * store fills them in where the request gives none, and leaves them out of what makes two requests with one
 * Idempotency-Key the same, so a repeat is the same request even when the type's defaults changed between.
 */
function withDefaults<S extends { typeDefaults?: TypeDefaults }>(s: S, type: ResolvedType | undefined): S {
  const typeDefaults: TypeDefaults = {
    ...(type?.timeoutMs == null ? {} : { timeoutMs: type.timeoutMs }),
    ...(type?.maxAttempts == null ? {} : { maxAttempts: type.maxAttempts }),
  };
  return Object.keys(typeDefaults).length === 0 ? s : { ...s, typeDefaults };
}

export interface SessionTypesOptions {
  db: Db;
  windows: TypeWindows;
  log: EventLog;
  /** Tells of registrations on any replica (`types`); absent: no caching of lookups. */
  notifier?: Notifier | undefined;
}

interface LookWaiter {
  resolve: (found: boolean) => void;
  reject: (err: unknown) => void;
}

export class SessionTypes {
  private readonly validators = new Map<string, InputCheck>();
  /** What this replica last saw of each runner's registration in the database, and when. */
  private readonly seen = new Map<string, { at: number; found: boolean }>();

  /** Each type as last looked up (undefined: no runner registered it), and when. */
  private readonly resolved = new Map<string, { type: ResolvedType | undefined; at: number }>();
  /** Counts registrations heard of: a lookup begun before one is not kept. */
  invalidations = 0;

  constructor(private readonly opts: SessionTypesOptions) {
    opts.notifier?.on('types', () => this.invalidate());
  }

  /** Registrations changed (here, or on another replica as NOTIFY tells): look the types up again. */
  invalidate(): void {
    this.resolved.clear();
    this.invalidations++;
  }

  get windows(): TypeWindows {
    return this.opts.windows;
  }

  /**
   * Checks a runner's registration: names once each, `flow` without a schema, each schema storable,
   * within TYPE_SCHEMA_MAX_BYTES and compiled by ajv. Throws a ValidationError naming body.types.N….
   */
  prepare(types: SessionTypeRegistration[]): TypeRegistration[] {
    const seen = new Set<string>();
    return types.map((t, i) => {
      const at = `body.types.${i}`;
      if (seen.has(t.name)) throw new ValidationError(`${at}.name`, `"${t.name}" is registered twice`);
      seen.add(t.name);
      const note = t.note ?? null;
      if (BUILT_IN_TYPES.has(t.name)) {
        for (const field of ['timeoutMs', 'maxAttempts'] as const)
          if (t[field] !== undefined)
            throw new ValidationError(
              `${at}.${field}`,
              `${t.name} is built in: its sessions take the API's defaults; leave ${field} out`,
            );
      }
      const defaults = { timeoutMs: t.timeoutMs ?? null, maxAttempts: t.maxAttempts ?? null };
      if (t.schema === null) return { name: t.name, schema: null, schemaHash: null, note, ...defaults };
      if (BUILT_IN_TYPES.has(t.name))
        throw new ValidationError(
          `${at}.schema`,
          `${t.name} is built in: the API checks its input with its own rules; send null`,
        );
      const unstorable = findUnstorable(t.schema, `${at}.schema`);
      if (unstorable) throw new ValidationError(unstorable.path, unstorable.message);
      const bytes = Buffer.byteLength(JSON.stringify(t.schema));
      if (bytes > TYPE_SCHEMA_MAX_BYTES)
        throw new ValidationError(
          `${at}.schema`,
          `is ${bytes} bytes of JSON, over the ${TYPE_SCHEMA_MAX_BYTES / 1024} KiB a type's input schema may have`,
        );
      const hash = schemaHash(t.schema);
      try {
        this.validator(hash, t.schema);
      } catch (err) {
        throw new ValidationError(
          `${at}.schema`,
          `is not a JSON Schema the API can use: ${(err as Error).message.slice(0, 300)}`,
        );
      }
      return { name: t.name, schema: t.schema, schemaHash: hash, note, ...defaults };
    });
  }

  /**
   * Validates each session's input against its type's schema. Throws a ValidationError at the first bad
   * one (`${at(i)}.input…`). Answers one warning per type no runner has registered, and the sessions with
   * their type's defaults as `typeDefaults`, which the store uses where they give no `timeoutMs` or
   * `maxAttempts` (the request's own win; without either, the API's apply). `flow` is not looked up. One lookup for all.
   */
  async check<S extends { type: string; input?: unknown; typeDefaults?: TypeDefaults }>(
    sessions: S[],
    at: (index: number) => string,
  ): Promise<{ warnings: string[]; sessions: S[] }> {
    const names = [...new Set(sessions.map((s) => s.type).filter((t) => !BUILT_IN_TYPES.has(t)))];
    if (names.length === 0) return { warnings: [], sessions };
    const types = await this.resolve(names);
    const validators = new Map<string, InputCheck | undefined>();
    for (const { schemaHash } of types.values()) {
      if (schemaHash !== null && !validators.has(schemaHash))
        validators.set(schemaHash, await this.validatorByHash(schemaHash));
    }
    sessions.forEach((s, i) => {
      const hash = types.get(s.type)?.schemaHash;
      const check = hash ? validators.get(hash) : undefined;
      if (!check) return;
      // An absent input is stored, and run, as {}: that is what the schema must accept.
      const sent = s.input ?? {};
      const input = check.copy ? structuredClone(sent) : sent;
      if (!check.validate(input)) throw firstProblem(check, `${at(i)}.input`);
    });
    return {
      warnings: names.filter((n) => !types.has(n)).map((n) => `no runner has registered type "${n}"`),
      sessions: sessions.map((s) => withDefaults(s, types.get(s.type))),
    };
  }

  /**
   * Whether the runner's registration is missing from the database (a fresh one): it should register again.
   * Asked at most once per ASK_AGAIN_MS (a runner that does not register, an older one, costs one look then).
   */
  async needsRegistration(runnerId: string): Promise<boolean> {
    const now = Date.now();
    const known = this.seen.get(runnerId);
    if (known !== undefined && now - known.at < (known.found ? REGISTERED_TTL_MS : ASK_AGAIN_MS))
      return false;
    const found = await this.lookUpRegistration(runnerId);
    this.remember(runnerId, found);
    return !found;
  }

  /** Runners waiting for the next look, and whether a look is in flight. */
  private nextLook = new Map<string, LookWaiter[]>();
  private looking = false;

  /**
   * Looks up whether a runner has registered, batched like the heartbeats themselves: while one look is in
   * flight, the runners asked after it wait for the next, which asks for all of them in one query, and a
   * look gathers the runners asked within LOOK_GATHER_MS. A fleet's heartbeats arriving together (their
   * first after an API restart) cost a few queries, not one each; an unknown runner's heartbeat waits up to
   * that much longer, once per REGISTERED_TTL_MS.
   */
  private lookUpRegistration(runnerId: string): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const list = this.nextLook.get(runnerId);
      if (list) list.push({ resolve, reject });
      else this.nextLook.set(runnerId, [{ resolve, reject }]);
      if (!this.looking) {
        this.looking = true;
        setTimeout(() => this.look(), LOOK_GATHER_MS);
      }
    });
  }

  private look(): void {
    const batch = this.nextLook;
    this.nextLook = new Map();
    runnersWithTypeRegistrations(this.opts.db, [...batch.keys()])
      .then(
        (found) => {
          for (const [id, waiters] of batch) for (const w of waiters) w.resolve(found.has(id));
        },
        (err: unknown) => {
          for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
        },
      )
      .finally(() => {
        if (this.nextLook.size === 0) this.looking = false;
        else setTimeout(() => this.look(), LOOK_GATHER_MS);
      });
  }

  /**
   * The sessions with their types' registered defaults where they give none (timeoutMs, maxAttempts), as
   * an enqueue fills them in, without checking input: what a schedule's fire time makes.
   */
  async withTypeDefaults<S extends { type: string; typeDefaults?: TypeDefaults }>(
    sessions: S[],
  ): Promise<S[]> {
    const names = [...new Set(sessions.map((s) => s.type).filter((t) => !BUILT_IN_TYPES.has(t)))];
    if (names.length === 0) return sessions;
    const types = await this.resolve(names);
    return sessions.map((s) => withDefaults(s, types.get(s.type)));
  }

  /** A runner's registration committed through this replica. */
  registered(runnerId: string): void {
    this.remember(runnerId, true);
    this.invalidate();
  }

  /** Each registered type's schema hash and defaults by the store's rule; absent: unregistered. */
  private async resolve(names: string[]): Promise<Map<string, ResolvedType>> {
    const ttl = this.opts.notifier?.connected ? RESOLVED_TTL_MS : 0;
    const now = Date.now();
    const out = new Map<string, ResolvedType>();
    const missing: string[] = [];
    for (const name of names) {
      const known = this.resolved.get(name);
      if (known === undefined || now - known.at >= ttl) missing.push(name);
      else if (known.type !== undefined) out.set(name, known.type);
    }
    if (missing.length === 0) return out;
    const before = this.invalidations;
    const found = await resolveTypes(this.opts.db, missing, this.opts.windows);
    const keep = ttl > 0 && before === this.invalidations;
    if (keep && this.resolved.size > 10_000) this.resolved.clear();
    for (const name of missing) {
      const type = found.get(name);
      if (type !== undefined) out.set(name, type);
      if (keep) this.resolved.set(name, { type, at: now });
    }
    return out;
  }

  private remember(runnerId: string, found: boolean): void {
    this.seen.delete(runnerId);
    this.seen.set(runnerId, { at: Date.now(), found });
    if (this.seen.size > 100_000) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  /** The compiled validator of a schema hash; undefined when it cannot be compiled here (logged). */
  private async validatorByHash(hash: string): Promise<InputCheck | undefined> {
    const cached = this.validators.get(hash);
    if (cached) return cached;
    const schema = await typeSchemaByHash(this.opts.db, hash);
    if (!schema) return undefined;
    try {
      return this.validator(hash, schema);
    } catch (err) {
      // Registered through a replica that could compile it: the runner checks the input instead.
      this.opts.log.warn({ schemaHash: hash, err: (err as Error).message }, 'input schema not compiled');
      return undefined;
    }
  }

  private validator(hash: string, schema: Record<string, unknown>): InputCheck {
    const cached = this.validators.get(hash);
    if (cached) return cached;
    const copy = JSON.stringify(schema).includes('"default":');
    const ajv = ajvFor(schema, copy);
    let check: InputCheck;
    try {
      check = { validate: ajv.compile(schema), copy };
    } finally {
      // Compiled once per hash: out of ajv's registry, which would keep every schema ever compiled and
      // refuse a second schema under the same $id (two runners, two versions).
      ajv.removeSchema(schema);
    }
    this.validators.set(hash, check);
    if (this.validators.size > MAX_VALIDATORS) {
      const oldest = this.validators.keys().next().value;
      if (oldest !== undefined) this.validators.delete(oldest);
    }
    return check;
  }
}
