import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ValidationError } from '../core/errors.js';
import { checkFlowInput } from '../protocol/flow.js';
import { checkDefinition, type NoBrowserRunContext, type SessionRunContext } from './define.js';
import { inputValidator } from './input.js';
import { inputJsonSchema, type InputJsonSchema } from './json-schema.js';
import { installSessionModuleHooks } from './module-hooks.js';

export const FLOW_TYPE = 'flow';

/** A session type ready to run: a normalized definition. */
export interface SessionType {
  name: string;
  /** `flow` is the built-in declarative type, run by the flow executor. */
  kind: 'flow' | 'code';
  browser: boolean;
  reuseContext: boolean;
  timeoutMs?: number;
  maxAttempts?: number;
  /** File the type came from, or `built-in`. */
  source: string;
  /** Returns the (parsed) input or throws a ValidationError naming the bad field. */
  validateInput(input: unknown): unknown;
  /** The input schema as JSON Schema, which the runner registers for the API to check at enqueue. */
  inputJsonSchema?: InputJsonSchema;
  run(ctx: SessionRunContext | NoBrowserRunContext): Promise<unknown>;
}

export interface LoadProblem {
  file: string;
  message: string;
}

export interface LoadedSessionTypes {
  types: Map<string, SessionType>;
  problems: LoadProblem[];
}

export function flowSessionType(): SessionType {
  return {
    name: FLOW_TYPE,
    kind: 'flow',
    browser: true,
    reuseContext: false,
    source: 'built-in',
    inputJsonSchema: { schema: null },
    validateInput(input) {
      const problem = checkFlowInput(input);
      if (problem) throw new ValidationError(problem.path, problem.message);
      return input;
    },
    run() {
      // The executor runs flows itself (it owns the flow options); this is never called.
      return Promise.reject(new Error('flow sessions are run by the flow executor'));
    },
  };
}

const MODULE_EXTENSIONS = ['.js', '.mjs', '.cjs'];
const TS_EXTENSIONS = ['.ts', '.mts', '.cts'];

function isSessionModule(file: string): boolean {
  if (file.startsWith('.') || file.startsWith('_') || /\.d\.[mc]?ts$/.test(file)) return false;
  return [...MODULE_EXTENSIONS, ...TS_EXTENSIONS].some((ext) => file.endsWith(ext));
}

/** Where a syntax error is (Node puts `file:line` first in the stack of one), when it is not `file`. */
function errorLocation(err: Error, file: string): string {
  const first = err.stack?.split('\n')[0] ?? '';
  const m = /^(file:\/\/\S+|\/\S+):(\d+)$/.exec(first);
  if (!m?.[1]) return '';
  const where = m[1].startsWith('file:') ? fileURLToPath(m[1]) : m[1];
  return where === file ? ` (line ${m[2]})` : ` (in ${where}:${m[2]})`;
}

/** Why a module did not load, and what to do about it. */
function loadError(err: unknown, file: string): Error {
  const e = err as NodeJS.ErrnoException;
  const first = (e.message ?? String(err)).split('\n')[0] ?? '';
  if (e.code === 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX') {
    return new Error(
      `${first}${errorLocation(e, file)}: Node.js runs TypeScript by stripping types only, so enums, namespaces and constructor parameter properties cannot run; use a union type or a const object instead of an enum and plain class fields, or compile the module to .js (tsc)`,
    );
  }
  if (e.code === 'ERR_UNKNOWN_FILE_EXTENSION' && TS_EXTENSIONS.some((x) => file.endsWith(x))) {
    return new Error(
      'this Node.js runs without TypeScript type stripping (is --no-experimental-strip-types set?): use Node.js 22.18+ without that flag, or compile the module to .js',
    );
  }
  if (e.code === 'ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING') {
    return new Error(`${first}: Node.js does not strip types under node_modules; compile it to .js`);
  }
  return new Error(
    `cannot load: ${first}${e instanceof SyntaxError ? errorLocation(e, file) : ''}${tsHint(first)}`,
  );
}

/** The two mistakes of code written for tsc rather than for type stripping. */
function tsHint(message: string): string {
  if (/does not provide an export named/.test(message))
    return ' (a type? import it with `import type`: types are stripped, so only values can be imported)';
  const missing = /Cannot find module '([^']+)\.js'/.exec(message);
  if (missing?.[1] && existsSync(`${missing[1]}.ts`))
    return ` (import TypeScript files by their own name: ${basename(missing[1])}.ts)`;
  return '';
}

async function loadOne(file: string): Promise<SessionType> {
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    throw loadError(err, file);
  }
  const def = mod.default;
  if (def === undefined) {
    throw new Error('no default export: the module must `export default defineSession({ name, run })`');
  }
  try {
    checkDefinition(def);
  } catch (err) {
    throw new Error(`default export is not a valid defineSession(): ${(err as Error).message}`);
  }
  const validateInput = inputValidator(def.input);
  const browser = def.browser !== false;
  const definition = def as { run(ctx: SessionRunContext | NoBrowserRunContext): unknown };
  return {
    name: def.name,
    kind: 'code',
    browser,
    reuseContext: browser && def.reuseContext === true,
    ...(def.timeoutMs !== undefined ? { timeoutMs: def.timeoutMs } : {}),
    ...(def.maxAttempts !== undefined ? { maxAttempts: def.maxAttempts } : {}),
    source: file,
    validateInput,
    inputJsonSchema: inputJsonSchema(def.input),
    run: async (ctx) => definition.run(ctx),
  };
}

/**
 * The built-in `flow` type plus every session module in `dir` (each default-exports defineSession()).
 * A module that fails to load is reported in `problems` (naming its file); the others still load.
 */
export async function loadSessionTypes(
  dir?: string,
  opts: { log?: (msg: string, data?: object) => void } = {},
): Promise<LoadedSessionTypes> {
  const types = new Map<string, SessionType>([[FLOW_TYPE, flowSessionType()]]);
  const problems: LoadProblem[] = [];
  if (dir === undefined) return { types, problems };
  const root = resolve(dir);
  installSessionModuleHooks(root);
  let files: string[];
  try {
    files = (await readdir(root, { withFileTypes: true }))
      .filter((d) => d.isFile() && isSessionModule(d.name))
      .map((d) => d.name)
      .sort();
  } catch (err) {
    problems.push({ file: root, message: `cannot read the sessions folder: ${(err as Error).message}` });
    return { types, problems };
  }
  for (const name of files) {
    const file = join(root, name);
    try {
      const type = await loadOne(file);
      const existing = types.get(type.name);
      if (existing) {
        problems.push({
          file,
          message: `session type "${type.name}" is already defined by ${existing.source}; names must be unique`,
        });
        continue;
      }
      types.set(type.name, type);
      opts.log?.('session type loaded', { type: type.name, file, browser: type.browser });
    } catch (err) {
      problems.push({ file, message: (err as Error).message });
    }
  }
  return { types, problems };
}

/** One session module (`sfw dev`): its type, or an Error saying why it did not load. */
export async function loadSessionModule(file: string): Promise<SessionType> {
  const path = resolve(file);
  installSessionModuleHooks(dirname(path));
  return loadOne(path);
}
