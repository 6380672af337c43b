import type { Queryable } from './db.js';

/**
 * Live view's word between API replicas: each replica says, every few seconds and when it changes, which
 * sessions its viewers watch (and where other replicas reach it), so the replica a runner's live socket
 * lands on knows who wants the frames, and every replica's heartbeat answers name the watched sessions.
 */
export const LIVE_CHANNEL = 'sfw_live';

/** One replica's message (JSON, well under NOTIFY's 8000 bytes: callers send at most 150 ids each). */
export async function announceLive(db: Queryable, payload: string): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [LIVE_CHANNEL, payload]);
}
