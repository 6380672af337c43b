import type { Queryable } from './db.js';

/**
 * API replicas' word to each other: each says, every few seconds and when it changes, which sessions'
 * sockets it holds (live viewers, remote-browser clients) and where the other replicas reach it, so the
 * replica a runner's socket lands on knows where to pass it (src/server/replicas.ts).
 */
export const REPLICAS_CHANNEL = 'sfw_replicas';

/** One replica's message (JSON, well under NOTIFY's 8000 bytes: callers send at most 150 ids each). */
export async function announceToReplicas(db: Queryable, payload: string): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [REPLICAS_CHANNEL, payload]);
}
