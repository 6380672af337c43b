import { signWebhook, type SessionEventType, type WebhookEvent } from '@session-framework/sdk';
import type { FastifyBaseLogger } from 'fastify';
import { VERSION } from '../core/version.js';
import type { TargetPolicy } from '../protocol/targets.js';
import type { Db } from '../store/db.js';
import type { Notifier } from '../store/notify.js';
import { findSessions, type SessionRow } from '../store/sessions.js';
import {
  claimDeliveries,
  recordDelivery,
  releaseDeliveries,
  type ClaimedDelivery,
} from '../store/webhooks.js';
import { sessionSummaryView } from './views.js';
import { DeliveryMetrics } from './webhook-metrics.js';
import { postWebhook } from './webhook-http.js';

/**
 * The webhook sender. Every API replica runs one: it claims due deliveries (each claim is one try under a
 * lease, so replicas never send the same try and a replica that dies mid-try leaves it due again when the
 * lease lapses), signs and POSTs them, and records the result: delivered on a 2xx, else due again after an
 * exponential backoff with jitter until the delivery's retry window (WEBHOOK_RETRY_MS) closes, then failed.
 * New deliveries wake it through NOTIFY sfw_webhooks; it also looks every `pollMs`, and at the retries it
 * scheduled itself.
 */

export interface WebhookOptions {
  policy: TargetPolicy;
  /** How long after the session ended a delivery is still tried. */
  retryMs: number;
  /** Wait before the second try; doubles per try up to maxBackoffMs, ±20 % jitter. */
  backoffMs: number;
  maxBackoffMs?: number | undefined;
  /** Deadline of one try. */
  timeoutMs: number;
  /** Tries in flight at once on this replica. */
  concurrency: number;
  /** A try not recorded within this long is due again (default timeoutMs + 5 s). */
  leaseMs?: number | undefined;
  /**
   * How often to look for due deliveries without a notification: retries another replica scheduled, tries
   * whose lease lapsed (default 5,000 ms while notifications are connected, else 1,000 ms).
   */
  pollMs?: number | undefined;
}

/** Results over 256 KiB are left out of the event (named in `truncated`): read the session for them. */
const MAX_RESULT_CHARS = 256 * 1024;
const STOP_GRACE_MS = 2000;

/** The wait before try n + 1 after n failed tries. */
export function retryDelayMs(failedTries: number, base: number, max: number, random = Math.random): number {
  const exp = Math.min(max, base * 2 ** Math.min(30, Math.max(0, failedTries - 1)));
  return Math.round(exp * (0.8 + 0.4 * random()));
}

/** The event a delivery carries: the session as a list shows it, with its result. */
export function renderEvent(
  d: { event: string; created_at: Date },
  session: SessionRow | undefined,
  sessionId: string,
): string {
  const data = session ? sessionSummaryView(session) : ({ id: sessionId } as WebhookEvent['data']);
  if (session) {
    const result = JSON.stringify(session.result ?? null);
    if (result.length <= MAX_RESULT_CHARS) data.result = session.result ?? null;
    else data.truncated = ['result'];
  }
  const event: WebhookEvent = {
    type: d.event as SessionEventType,
    timestamp: d.created_at.toISOString(),
    data,
  };
  return JSON.stringify(event);
}

export class WebhookSender {
  readonly metrics = new DeliveryMetrics();
  private readonly inFlight = new Map<
    string,
    { leaseToken: string; abort: AbortController; done: Promise<void> }
  >();
  private loop: Promise<void> | null = null;
  private stopped = true;
  private wake: (() => void) | null = null;
  private poked = false;
  /** The earliest retry this replica scheduled (it wakes for it rather than waiting for the poll). */
  private nextRetryAt = Infinity;
  private readonly poke = () => {
    this.poked = true;
    this.wake?.();
  };

  constructor(
    private readonly db: Db,
    private readonly opts: WebhookOptions,
    private readonly notifier?: Notifier | undefined,
    private readonly log?: Pick<FastifyBaseLogger, 'warn'> | undefined,
  ) {}

  private get leaseMs() {
    return this.opts.leaseMs ?? this.opts.timeoutMs + 5000;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.notifier?.on('webhooks', this.poke);
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const free = this.opts.concurrency - this.inFlight.size;
      let claimed: ClaimedDelivery[] = [];
      this.poked = false;
      if (free > 0) {
        try {
          claimed = await claimDeliveries(this.db, {
            limit: free,
            leaseMs: this.leaseMs,
            retryMs: this.opts.retryMs,
          });
          if (claimed.length > 0) await this.startTries(claimed);
        } catch (err) {
          this.log?.warn({ err: (err as Error).message }, 'webhook claim failed; will retry');
        }
      }
      // A full batch may mean more are due: look again at once while slots are free.
      if (claimed.length > 0 && claimed.length === free) continue;
      if (this.poked || this.stopped) continue;
      const untilRetry = this.nextRetryAt - Date.now();
      const pollMs = this.opts.pollMs ?? (this.notifier?.connected ? 5000 : 1000);
      await this.sleep(Math.max(0, Math.min(pollMs, untilRetry)));
      if (Date.now() >= this.nextRetryAt) this.nextRetryAt = Infinity;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  private async startTries(claimed: ClaimedDelivery[]): Promise<void> {
    const unrendered = claimed.filter((d) => d.body === null).map((d) => d.session_id);
    const sessions = new Map((await findSessions(this.db, unrendered)).map((s) => [s.id, s]));
    for (const d of claimed) {
      const body = d.body ?? renderEvent(d, sessions.get(d.session_id), d.session_id);
      const abort = new AbortController();
      const done = this.tryOnce(d, body, abort.signal)
        .catch((err: unknown) =>
          this.log?.warn(
            { err: (err as Error).message, deliveryId: d.id },
            'webhook try not recorded; it is due again when its lease lapses',
          ),
        )
        .finally(() => {
          this.inFlight.delete(d.id);
          this.poke();
        });
      this.inFlight.set(d.id, { leaseToken: d.lease_token, abort, done });
    }
  }

  private async tryOnce(d: ClaimedDelivery, body: string, signal: AbortSignal): Promise<void> {
    const timestamp = Math.floor(Date.now() / 1000);
    const out = await postWebhook({
      url: d.url,
      body,
      timeoutMs: this.opts.timeoutMs,
      policy: this.opts.policy,
      signal,
      headers: {
        'user-agent': `session-framework-webhooks/${VERSION}`,
        'webhook-id': d.id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signWebhook({ id: d.id, timestamp, payload: body, secret: d.secret }),
      },
    });
    if (out.aborted) {
      await releaseDeliveries(this.db, [{ id: d.id, leaseToken: d.lease_token }], out.error ?? 'interrupted');
      return;
    }
    const retryInMs = out.ok
      ? 0
      : retryDelayMs(d.attempts, this.opts.backoffMs, this.opts.maxBackoffMs ?? 3_600_000);
    const status = await recordDelivery(this.db, {
      id: d.id,
      leaseToken: d.lease_token,
      body,
      ok: out.ok,
      statusCode: out.statusCode,
      error: out.error,
      retryInMs,
    });
    if (status === 'delivered') {
      this.metrics.record('delivered', (Date.now() - d.created_at.getTime()) / 1000);
    } else if (status === 'pending') {
      this.metrics.record('retried');
      this.nextRetryAt = Math.min(this.nextRetryAt, Date.now() + retryInMs);
      this.wake?.();
    } else if (status === 'failed') {
      this.metrics.record('failed');
      this.log?.warn(
        { deliveryId: d.id, webhookId: d.webhook_id, attempts: d.attempts, error: out.error },
        'webhook delivery failed: its retry window closed',
      );
    }
  }

  /** Stops claiming; tries in flight get a short grace, then are abandoned and due again for any replica. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.notifier?.off('webhooks', this.poke);
    this.wake?.();
    await this.loop;
    const pending = [...this.inFlight.values()];
    if (pending.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(pending.map((p) => p.done)),
      new Promise((r) => (timer = setTimeout(r, Math.min(STOP_GRACE_MS, this.opts.timeoutMs)))),
    ]);
    clearTimeout(timer);
    for (const p of this.inFlight.values()) p.abort.abort();
    await Promise.all([...this.inFlight.values()].map((p) => p.done));
  }
}
