/**
 * Per-key limits: a bound on the sessions of one key (a session's `concurrencyKey`; for a flow, the host
 * of its first goto unless given) across every runner at once: at most `concurrency` running, at most
 * `perMinute` claimed in any rolling minute. Sessions of a full key wait; other work goes on.
 */

/** PUT /v1/limits/:key: the key's limit, replacing any it had (a field left out is no bound). */
export type PutLimitBody = {
  /** At most this many of the key's sessions running at once, fleet-wide (1 or more). */
  concurrency?: number;
  /** At most this many of the key's sessions claimed in any 60 s (1 or more). */
  perMinute?: number;
};

/** A key's limit with its live numbers. */
export type LimitView = {
  key: string;
  concurrency: number | null;
  perMinute: number | null;
  /** Sessions of the key running now. */
  running: number;
  /** Queued, due sessions of the key held back by the limit. */
  waiting: number;
  /** Sessions of the key claimed within the last minute (counted when perMinute is set, else null). */
  claimedLastMinute: number | null;
  /** When the waiting sessions are next looked at (null when none wait). */
  releaseAt: string | null;
  /**
   * No session of the key is claimed before this: its site answered a navigation with HTTP 429 or 503 and
   * Retry-After (null: no backoff now). A key may be listed for a backoff alone (concurrency and perMinute null).
   */
  backoffUntil: string | null;
  createdAt: string;
  updatedAt: string;
};

export type LimitList = {
  items: LimitView[];
};

/** Runner: a session's navigation got HTTP 429 or 503 with Retry-After (POST /v1/runners/:id/sessions/:sid/backoff). */
export type ReportBackoffBody = {
  leaseToken: string;
  /** What Retry-After asked for, in ms (held to at most an hour). */
  retryAfterMs: number;
  /** The navigation's HTTP status. */
  status: number;
  url?: string;
};

export type ReportBackoffReply = {
  /** The session's key (null: it has none, nothing changed). */
  key: string | null;
  /** The key's backoff time (the later one, when another session asked for longer). */
  backoffUntil: string | null;
};
