import { NotFoundError } from '../core/errors.js';
import { uuidv7 } from '../core/ids.js';
import type { Queryable } from './db.js';

/**
 * Queries about webhooks and their deliveries (the outbox the trigger of migration 0005 fills when a
 * session becomes final): endpoints, the sender's claim of due deliveries under a lease, results.
 */

export const WEBHOOKS_CHANNEL = 'sfw_webhooks';

export interface WebhookRow {
  id: string;
  url: string;
  events: string[];
  secret: string;
  enabled: boolean;
  created_at: Date;
  updated_at: Date;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface DeliveryRow {
  id: string;
  webhook_id: string;
  session_id: string;
  event: string;
  body: string | null;
  status: DeliveryStatus;
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  lease_token: string | null;
  next_attempt_at: Date;
  last_attempt_at: Date | null;
  created_at: Date;
  delivered_at: Date | null;
  expires_at: Date | null;
}

export interface NewWebhook {
  url: string;
  events: string[];
  secret: string;
  enabled: boolean;
}

export async function createWebhook(db: Queryable, w: NewWebhook): Promise<WebhookRow> {
  const { rows } = await db.query<WebhookRow>(
    `INSERT INTO webhooks (id, url, events, secret, enabled) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
    [uuidv7(), w.url, w.events, w.secret, w.enabled],
  );
  return rows[0]!;
}

export async function getWebhook(db: Queryable, id: string): Promise<WebhookRow> {
  const { rows } = await db.query<WebhookRow>('SELECT * FROM webhooks WHERE id = $1', [id]);
  if (!rows[0]) throw new NotFoundError(`webhook ${id}`);
  return rows[0];
}

/** Newest first; `before` is the last id of the previous page. */
export async function listWebhooks(
  db: Queryable,
  opts: { limit: number; before?: string | undefined },
): Promise<{ rows: WebhookRow[]; more: boolean }> {
  const { rows } = await db.query<WebhookRow>(
    `SELECT * FROM webhooks WHERE ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2`,
    [opts.before ?? null, opts.limit + 1],
  );
  return { rows: rows.slice(0, opts.limit), more: rows.length > opts.limit };
}

export async function updateWebhook(
  db: Queryable,
  id: string,
  patch: Partial<NewWebhook>,
): Promise<WebhookRow> {
  const { rows } = await db.query<WebhookRow>(
    `UPDATE webhooks SET
       url = coalesce($2, url),
       events = coalesce($3, events),
       secret = coalesce($4, secret),
       enabled = coalesce($5, enabled),
       updated_at = now()
     WHERE id = $1 RETURNING *`,
    [id, patch.url ?? null, patch.events ?? null, patch.secret ?? null, patch.enabled ?? null],
  );
  if (!rows[0]) throw new NotFoundError(`webhook ${id}`);
  return rows[0];
}

/** Deletes the webhook and its deliveries (pending ones are not sent). */
export async function deleteWebhook(db: Queryable, id: string): Promise<void> {
  const { rows } = await db.query<{ id: string }>(
    `WITH w AS (DELETE FROM webhooks WHERE id = $1 RETURNING id),
          d AS (DELETE FROM webhook_deliveries WHERE webhook_id IN (SELECT id FROM w))
     SELECT id FROM w`,
    [id],
  );
  if (!rows[0]) throw new NotFoundError(`webhook ${id}`);
}

/** A webhook's deliveries, newest first, optionally of one status. */
export async function listDeliveries(
  db: Queryable,
  webhookId: string,
  opts: { limit: number; before?: string | undefined; status?: DeliveryStatus | undefined },
): Promise<{ rows: DeliveryRow[]; more: boolean }> {
  const { rows } = await db.query<DeliveryRow>(
    `SELECT * FROM webhook_deliveries
     WHERE webhook_id = $1 AND ($2::uuid IS NULL OR id < $2) AND ($3::text IS NULL OR status = $3)
     ORDER BY id DESC LIMIT $4`,
    [webhookId, opts.before ?? null, opts.status ?? null, opts.limit + 1],
  );
  return { rows: rows.slice(0, opts.limit), more: rows.length > opts.limit };
}

/**
 * Sends a delivery again, whatever its status: pending and due now, with a fresh retry window. A try in
 * flight keeps going; its result is not recorded (its lease is replaced).
 */
export async function redeliver(
  db: Queryable,
  webhookId: string,
  deliveryId: string,
  retryMs: number,
): Promise<DeliveryRow> {
  const { rows } = await db.query<DeliveryRow>(
    `WITH d AS (
       UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), lease_token = NULL,
         delivered_at = NULL, expires_at = now() + $3 * interval '1 millisecond'
       WHERE id = $2 AND webhook_id = $1 RETURNING *
     ), n AS (SELECT pg_notify('${WEBHOOKS_CHANNEL}', '') FROM d)
     SELECT d.* FROM d, (SELECT count(*) FROM n) AS sent`,
    [webhookId, deliveryId, retryMs],
  );
  if (!rows[0]) throw new NotFoundError(`delivery ${deliveryId} of webhook ${webhookId}`);
  return rows[0];
}

export interface ClaimedDelivery extends DeliveryRow {
  url: string;
  secret: string;
  /** Set by the claim: this try's fence. */
  lease_token: string;
}

/**
 * Takes up to `limit` due deliveries of enabled webhooks for one try each: attempts + 1, a fresh lease
 * token, next_attempt_at moved `leaseMs` ahead (due again then if this replica never records the try),
 * expires_at set on the first try. Concurrent senders skip each other's rows.
 */
export async function claimDeliveries(
  db: Queryable,
  opts: { limit: number; leaseMs: number; retryMs: number },
): Promise<ClaimedDelivery[]> {
  const { rows } = await db.query<ClaimedDelivery>(
    `WITH due AS (
       SELECT d.id, w.url, w.secret FROM webhook_deliveries d
       JOIN webhooks w ON w.id = d.webhook_id AND w.enabled
       WHERE d.status = 'pending' AND d.next_attempt_at <= now()
       ORDER BY d.next_attempt_at
       LIMIT $1
       FOR UPDATE OF d SKIP LOCKED
     )
     UPDATE webhook_deliveries d SET
       attempts = d.attempts + 1,
       lease_token = gen_random_uuid(),
       last_attempt_at = now(),
       next_attempt_at = now() + $2 * interval '1 millisecond',
       expires_at = coalesce(d.expires_at, d.created_at + $3 * interval '1 millisecond')
     FROM due WHERE d.id = due.id
     RETURNING d.*, due.url, due.secret`,
    [opts.limit, opts.leaseMs, opts.retryMs],
  );
  return rows;
}

export interface DeliveryResult {
  id: string;
  leaseToken: string;
  body: string;
  ok: boolean;
  statusCode: number | null;
  error: string | null;
  /** After a failed try: the wait before the next one (past expires_at, the delivery fails instead). */
  retryInMs: number;
}

/**
 * Records a try under its lease: delivered, pending again after the backoff, or failed when the next try
 * would come after expires_at. Answers the new status, or null when the lease was replaced (a redeliver,
 * or a lease that lapsed and another replica took).
 */
export async function recordDelivery(db: Queryable, r: DeliveryResult): Promise<DeliveryStatus | null> {
  const { rows } = await db.query<{ status: DeliveryStatus }>(
    `UPDATE webhook_deliveries SET
       body = coalesce(body, $3),
       status = CASE WHEN $4 THEN 'delivered'
                     WHEN now() + $7 * interval '1 millisecond' > expires_at THEN 'failed'
                     ELSE 'pending' END,
       last_status_code = $5,
       last_error = $6,
       delivered_at = CASE WHEN $4 THEN now() END,
       next_attempt_at = CASE WHEN $4 THEN next_attempt_at ELSE now() + $7 * interval '1 millisecond' END
     WHERE id = $1 AND lease_token = $2 AND status = 'pending'
     RETURNING status`,
    [r.id, r.leaseToken, r.body, r.ok, r.statusCode, r.error, Math.max(0, Math.round(r.retryInMs))],
  );
  return rows[0]?.status ?? null;
}

/** Tries a stopping sender abandoned: due again now, for any replica. */
export async function releaseDeliveries(
  db: Queryable,
  refs: { id: string; leaseToken: string }[],
  reason: string,
): Promise<void> {
  if (refs.length === 0) return;
  await db.query(
    `WITH r AS (
       UPDATE webhook_deliveries d SET next_attempt_at = now(), last_error = $3
       FROM unnest($1::uuid[], $2::uuid[]) AS x(id, token)
       WHERE d.id = x.id AND d.lease_token = x.token AND d.status = 'pending'
       RETURNING d.id
     )
     SELECT pg_notify('${WEBHOOKS_CHANNEL}', '') FROM (SELECT count(*) AS n FROM r) c WHERE c.n > 0`,
    [refs.map((r) => r.id), refs.map((r) => r.leaseToken), reason],
  );
}

/** Pending deliveries of existing webhooks, and the oldest one's age (for /metrics). */
export async function pendingDeliveries(db: Queryable): Promise<{ count: number; oldestSeconds: number }> {
  const { rows } = await db.query<{ count: number; oldest: number | null }>(
    `SELECT count(*)::bigint AS count,
            extract(epoch FROM now() - min(d.created_at))::double precision AS oldest
     FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = 'pending'`,
  );
  return { count: rows[0]?.count ?? 0, oldestSeconds: rows[0]?.oldest ?? 0 };
}

/** When the next pending delivery comes due, in ms from now (null: none pending). */
export async function nextDueInMs(db: Queryable): Promise<number | null> {
  const { rows } = await db.query<{ ms: number | null }>(
    `SELECT greatest(0, extract(epoch FROM min(next_attempt_at) - now()) * 1000)::double precision AS ms
     FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled
     WHERE d.status = 'pending'`,
  );
  return rows[0]?.ms ?? null;
}
