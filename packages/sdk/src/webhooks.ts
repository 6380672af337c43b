import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SfwError } from './errors.js';
import type { SessionSummary } from './wire.js';

/**
 * Webhooks: wire shapes, and the Standard Webhooks signature (https://www.standardwebhooks.com) the API
 * signs each delivery with and a receiver checks with `verifyWebhook`.
 *
 * A delivery is a POST with a JSON body `{type, timestamp, data}` and three headers: `webhook-id` (the same
 * on every retry: dedupe by it), `webhook-timestamp` (Unix seconds of this try) and `webhook-signature`
 * (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the base64 part of the `whsec_` secret).
 */

/** Events a webhook may ask for; `session.finished` stands for all four. */
export const WEBHOOK_EVENTS = [
  'session.succeeded',
  'session.failed',
  'session.error',
  'session.cancelled',
  'session.finished',
] as const;
export type WebhookEventName = (typeof WEBHOOK_EVENTS)[number];
/** The `type` of a delivered event: the status the session ended with. */
export type SessionEventType = Exclude<WebhookEventName, 'session.finished'>;

export type CreateWebhookBody = {
  /** http or https; held to the API's target policy (ALLOWED_TARGETS) when saved and at each send. */
  url: string;
  events: WebhookEventName[];
  /** `whsec_` + base64 of 24 to 64 bytes; generated when not given. */
  secret?: string;
  enabled?: boolean;
};

export type UpdateWebhookBody = {
  url?: string;
  events?: WebhookEventName[];
  secret?: string;
  enabled?: boolean;
};

export type WebhookView = {
  id: string;
  url: string;
  events: WebhookEventName[];
  /** In full when created, when changed, and with `?reveal=true`; otherwise `whsec_…` and its last 4 characters. */
  secret: string;
  enabled: boolean;
  createdAt: string;
  updatedAt: string;
};

export type WebhookList = {
  items: WebhookView[];
  nextCursor: string | null;
};

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export type WebhookDeliveryView = {
  /** The `webhook-id` header of every try. */
  id: string;
  webhookId: string;
  sessionId: string;
  event: SessionEventType;
  status: DeliveryStatus;
  /** Tries made (one in flight included). */
  attempts: number;
  /** HTTP status of the last try's answer (null: none, e.g. connection refused or timeout). */
  lastStatusCode: number | null;
  lastError: string | null;
  /** When the next try is due (null unless pending). */
  nextAttemptAt: string | null;
  lastAttemptAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
  /** No try after this time: the delivery fails instead (set at the first try). */
  expiresAt: string | null;
};

export type WebhookDeliveryList = {
  items: WebhookDeliveryView[];
  nextCursor: string | null;
};

export type ListWebhooksQuery = {
  limit?: number;
  cursor?: string;
};

export type ListDeliveriesQuery = {
  status?: DeliveryStatus;
  limit?: number;
  cursor?: string;
};

/** The body of a delivery. */
export type WebhookEvent = {
  type: SessionEventType;
  /** When the session became final (the delivery was written), RFC 3339. */
  timestamp: string;
  /** The session as a list shows it, with its result (left out, and named in `truncated`, over 256 KiB). */
  data: SessionSummary;
};

const SECRET_PREFIX = 'whsec_';

/** A new secret: `whsec_` + base64 of 24 random bytes. */
export function generateWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(24).toString('base64');
}

/** The HMAC key of a secret: the base64 after `whsec_` (the prefix is optional, as in the spec's libraries). */
export function webhookSecretKey(secret: string): Buffer {
  const text = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0)
    throw new SfwError('VALIDATION', 'a webhook secret is whsec_ followed by base64');
  return Buffer.from(text, 'base64');
}

/** `v1,<base64 HMAC-SHA256 of "id.timestamp.payload">`. */
export function signWebhook(opts: {
  id: string;
  timestamp: number;
  payload: string | Uint8Array;
  secret: string;
}): string {
  const mac = createHmac('sha256', webhookSecretKey(opts.secret));
  mac.update(`${opts.id}.${opts.timestamp}.`);
  mac.update(opts.payload);
  return `v1,${mac.digest('base64')}`;
}

/** A delivery that is not the API's: bad or missing signature, stale timestamp, unreadable body. */
export class WebhookVerificationError extends SfwError {
  override readonly name = 'WebhookVerificationError';
  constructor(message: string) {
    super('WEBHOOK_SIGNATURE', message);
  }
}

type HeaderSource = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

function header(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function')
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((k) => k.toLowerCase() === name);
  const v = key === undefined ? undefined : record[key];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Checks a delivery as the receiver got it: the raw body (before any JSON parsing: a re-serialised body
 * does not verify), its headers (Node's `req.headers`, a fetch `Headers`, or a plain record) and the
 * webhook's secret. Answers the parsed event, or throws WebhookVerificationError when a header is missing,
 * the timestamp is more than `toleranceSeconds` away from now (replays), or no signature matches
 * (compared in constant time).
 */
export function verifyWebhook(opts: {
  payload: string | Uint8Array;
  headers: HeaderSource;
  secret: string;
  toleranceSeconds?: number;
  /** Unix seconds (default: now); for tests. */
  now?: number;
}): WebhookEvent {
  const id = header(opts.headers, 'webhook-id');
  const timestamp = header(opts.headers, 'webhook-timestamp');
  const signatures = header(opts.headers, 'webhook-signature');
  if (!id || !timestamp || !signatures)
    throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature header');
  if (!/^\d{1,12}$/.test(timestamp))
    throw new WebhookVerificationError('webhook-timestamp is not Unix seconds');
  const ts = Number(timestamp);
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  const tolerance = opts.toleranceSeconds ?? 300;
  if (Math.abs(now - ts) > tolerance)
    throw new WebhookVerificationError(
      `webhook-timestamp is ${now - ts} s from now, beyond the tolerance of ${tolerance} s`,
    );
  const expected = Buffer.from(
    signWebhook({ id, timestamp: ts, payload: opts.payload, secret: opts.secret }).slice(3),
    'base64',
  );
  const match = signatures.split(' ').some((sig) => {
    const [version, value] = sig.split(',', 2);
    if (version !== 'v1' || !value) return false;
    const given = Buffer.from(value, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!match) throw new WebhookVerificationError('no webhook-signature matches the secret');
  const text = typeof opts.payload === 'string' ? opts.payload : Buffer.from(opts.payload).toString('utf8');
  try {
    return JSON.parse(text) as WebhookEvent;
  } catch {
    throw new WebhookVerificationError('the signed body is not JSON');
  }
}
