import { pino, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * Structured JSON logs (pino), one line per event, with runner and session ids as fields. Tokens and
 * `secret`/`secrets` fields (of a session's input and its flow values too) are redacted by path in a logged
 * object; the values of a session's `secret*` fields are also taken out of every message its executor
 * produces (src/sessions/redact.ts). On a terminal the same events are printed readably (LOG_FORMAT=json
 * keeps JSON there too).
 */
export function createLogger(
  level: string,
  bindings: Record<string, unknown> = {},
  destination?: DestinationStream,
): Logger {
  const options = {
    level,
    base: { pid: process.pid, ...bindings },
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
      ],
      censor: '[redacted]',
    },
  };
  if (destination) return pino(options, destination);
  if (process.stdout.isTTY && process.env.LOG_FORMAT !== 'json') {
    return pino(
      options,
      pretty({
        colorize: true,
        sync: true,
        singleLine: true,
        translateTime: 'HH:MM:ss.l',
        ignore: 'pid,hostname',
      }),
    );
  }
  return pino(options);
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
