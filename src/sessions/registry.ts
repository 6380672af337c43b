import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ValidationError } from '../core/errors.js';
import { checkFlowInput } from '../protocol/flow.js';
import { checkDefinition, type NoBrowserRunContext, type SessionRunContext } from './define.js';
import { inputValidator } from './input.js';

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

async function loadOne(file: string): Promise<SessionType> {
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_UNKNOWN_FILE_EXTENSION' && TS_EXTENSIONS.some((x) => file.endsWith(x))) {
      throw new Error('TypeScript modules need a loader here: compile to .js, or run the runner with tsx');
    }
    throw new Error(`cannot load: ${e.message.split('\n')[0]}`);
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
