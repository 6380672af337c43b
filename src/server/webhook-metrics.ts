import type { Exposition } from './metrics.js';

/** The outcome of one recorded try: delivered, retried later, or failed for good (past its retry window). */
export type DeliveryOutcome = 'delivered' | 'retried' | 'failed';
const OUTCOMES: readonly DeliveryOutcome[] = ['delivered', 'retried', 'failed'];

/**
 * This replica's webhook tries by outcome and the delivery latency (session final → receiver's 2xx),
 * in-process like the request metrics (each replica sends its own share); pending deliveries are
 * fleet-wide, read from the database.
 */
export class DeliveryMetrics {
  static readonly BOUNDS = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21_600, 86_400,
  ];
  private readonly outcomes = new Map<DeliveryOutcome, number>(OUTCOMES.map((o) => [o, 0]));
  private readonly buckets = new Array<number>(DeliveryMetrics.BOUNDS.length).fill(0);
  private count = 0;
  private sum = 0;

  record(outcome: DeliveryOutcome, latencySeconds?: number): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    if (outcome !== 'delivered' || latencySeconds === undefined) return;
    const s = Math.max(0, latencySeconds);
    DeliveryMetrics.BOUNDS.forEach((b, i) => {
      if (s <= b) this.buckets[i] = (this.buckets[i] ?? 0) + 1;
    });
    this.count++;
    this.sum += s;
  }

  write(out: Exposition, replica: string): void {
    out.family(
      'sfw_webhook_deliveries_total',
      'counter',
      'Webhook tries recorded by this API replica, by outcome',
    );
    for (const o of OUTCOMES)
      out.sample('sfw_webhook_deliveries_total', { replica, outcome: o }, this.outcomes.get(o) ?? 0);
    out.family(
      'sfw_webhook_delivery_latency_seconds',
      'histogram',
      "Time from a session's final status to the receiver's 2xx, for deliveries this replica made",
    );
    out.histogram(
      'sfw_webhook_delivery_latency_seconds',
      { replica },
      { bounds: DeliveryMetrics.BOUNDS, cumulative: this.buckets, count: this.count, sum: this.sum },
    );
  }
}

/** Fleet-wide: deliveries waiting for a try (a receiver down shows here). */
export function writePendingDeliveries(out: Exposition, p: { count: number; oldestSeconds: number }): void {
  out.family('sfw_webhook_deliveries_pending', 'gauge', 'Webhook deliveries not yet delivered or failed');
  out.sample('sfw_webhook_deliveries_pending', {}, p.count);
  out.family(
    'sfw_webhook_deliveries_pending_oldest_age_seconds',
    'gauge',
    'Age of the oldest pending webhook delivery (0 when none)',
  );
  out.sample('sfw_webhook_deliveries_pending_oldest_age_seconds', {}, p.oldestSeconds);
}
