import type { FastifyRequest } from 'fastify';
import { lazyChild, type EventLog } from '../core/log.js';

/**
 * The request's logger with the session and runner ids of its route: every line about a session or runner
 * carries its id. Made when something is logged (a child logger per request would cost every request).
 */
export function requestLog(req: FastifyRequest): EventLog {
  const { id, runnerId } = (req.params ?? {}) as { id?: string; runnerId?: string };
  if (id === undefined && runnerId === undefined) return req.log;
  return lazyChild(req.log, {
    ...(id === undefined ? {} : { sessionId: id }),
    ...(runnerId === undefined ? {} : { runnerId }),
  });
}

/** What background parts of the API (claim passes, batched writes) log through. */
export type WarnLog = Pick<EventLog, 'warn'>;
