import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs (pino), one line per event, with runner and session ids as fields. Tokens and
 * secrets are redacted wherever they appear in a logged object.
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
        '*.secret',
        'input.secret',
        'input.secrets',
      ],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
