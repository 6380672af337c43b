import { pino, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * Structured JSON logs (pino), one line per event, with runner and session ids as fields. Tokens and
 * `secret`/`secrets` fields (of a session's input and its flow values too) are redacted by path in a logged
 * object; the values of a session's `secret*` fields are also taken out of every message its executor
 * produces (src/sessions/redact.ts). On a terminal the same events are printed readably (LOG_FORMAT=json
 * keeps JSON there too).
 *
 * Every key appears once in a line: a child's bindings replace its parent's of the same name, and a field
 * of the logged object replaces a binding (strict JSON ingesters refuse repeated keys, and pino itself
 * writes each child's bindings after its parent's).
 */
export function createLogger(
  level: string,
  bindings: Record<string, unknown> = {},
  destination?: DestinationStream,
): Logger {
  const options = {
    level,
    base: null,
    // Bindings travel as the line's first fields (see uniqueKeys), merged with the logged object's.
    mixin: (_fields: object, _level: number, logger: Logger) => ({ ...boundFields(logger) }),
    redact: {
      paths: [
        'req.headers.authorization',
        'headers.authorization',
        'authorization',
        'token',
        'apiToken',
        'runnerToken',
        'leaseToken',
        'databaseUrl',
        '*.apiToken',
        '*.runnerToken',
        '*.leaseToken',
        'secret',
        'secrets',
        '*.secret',
        '*.secrets',
        'input.secret',
        'input.secrets',
        '*.input.secret',
        '*.input.secrets',
        'input.input.secret',
        'input.input.secrets',
        '*.input.input.secret',
        '*.input.input.secrets',
        'browser.proxy.password',
        '*.browser.proxy.password',
        '*.*.browser.proxy.password',
      ],
      censor: '[redacted]',
    },
  };
  const base = { pid: process.pid, ...bindings };
  if (destination) return uniqueKeys(pino(options, destination), base);
  if (process.stdout.isTTY && process.env.LOG_FORMAT !== 'json') {
    return uniqueKeys(
      pino(
        options,
        pretty({
          colorize: true,
          sync: true,
          singleLine: true,
          translateTime: 'HH:MM:ss.l',
          ignore: 'pid,hostname',
        }),
      ),
      base,
    );
  }
  return uniqueKeys(pino(options), base);
}

const FIELDS = Symbol('sfw.log.fields');
type Bound = Logger & { [FIELDS]?: Record<string, unknown> };
type ChildFn = (this: Logger, bindings: Record<string, unknown>, options?: object) => Logger;

const boundFields = (logger: Logger): Record<string, unknown> => (logger as Bound)[FIELDS] ?? {};

/**
 * Keeps a logger's bindings (its own and its children's) out of pino's bindings, which are written as
 * they come, once per level of children: each logger holds its merged fields instead, and the mixin
 * writes them once. Children inherit the overridden `child` from their parent (pino makes a child with
 * Object.create(parent)).
 */
function uniqueKeys(root: Logger, fields: Record<string, unknown>): Logger {
  const pinoChild = (Object.getPrototypeOf(root) as { child: ChildFn }).child;
  (root as Bound)[FIELDS] = fields;
  const child: ChildFn = function (this: Logger, bindings, options) {
    const made: Bound = pinoChild.call(this, {}, options);
    made[FIELDS] = { ...boundFields(this), ...bindings };
    return made;
  };
  root.child = child as unknown as Logger['child'];
  return root;
}

/** The logging methods of a logger, for code that only logs events. */
export type EventLog = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/**
 * A child logger made on first use at an enabled level: per-session logging on the hot path costs nothing
 * when its level is off (pino children are not free to make).
 */
export function lazyChild(
  parent: EventLog & {
    child(bindings: Record<string, unknown>): EventLog;
    isLevelEnabled?: (l: string) => boolean;
  },
  bindings: Record<string, unknown>,
): EventLog {
  let child: EventLog | undefined;
  const at = (level: keyof EventLog): Logger['info'] => {
    const log: Logger['info'] = (...args: Parameters<Logger['info']>) => {
      if (parent.isLevelEnabled && !parent.isLevelEnabled(level)) return;
      child ??= parent.child(bindings);
      child[level](...args);
    };
    return log;
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
