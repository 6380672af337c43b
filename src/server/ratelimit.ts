import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ErrorBody } from '../core/errors.js';

/**
 * Token-bucket rate limits on client endpoints, one bucket per API token (or per IP without one).
 * Runner endpoints are never limited: a fleet polling and heartbeating must not be starved by clients,
 * and a runner that misses heartbeats loses its leases. The buckets live in memory per API replica.
 */

export interface RateLimitOptions {
  /** Sustained requests per second per key; 0 turns limiting off. */
  perSec: number;
  /** Requests a key may send at once. */
  burst: number;
  /** Most keys tracked; beyond it idle (full) buckets are dropped first. */
  maxKeys?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(private readonly opts: RateLimitOptions) {
    this.maxKeys = opts.maxKeys ?? 100_000;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Takes one token for `key`; answers 0 when allowed, else the milliseconds until one is available. */
  take(key: string): number {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.opts.burst, at: now };
    b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / 1000) * this.opts.perSec);
    b.at = now;
    if (!this.buckets.has(key)) {
      if (this.buckets.size >= this.maxKeys) this.prune(now);
      this.buckets.set(key, b);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / this.opts.perSec) * 1000);
  }

  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.opts.perSec >= this.opts.burst) this.buckets.delete(key);
    }
    // Everyone is active: drop the oldest entries rather than grow without bound.
    for (const key of this.buckets.keys()) {
      if (this.buckets.size < this.maxKeys) break;
      this.buckets.delete(key);
    }
  }
}

function clientKey(req: FastifyRequest): string {
  const h = req.headers.authorization;
  if (req.caller === 'client' && typeof h === 'string') {
    // Keyed by a digest: the token itself is never kept.
    return `t:${createHash('sha256').update(h).digest('base64url').slice(0, 22)}`;
  }
  return `ip:${req.ip}`;
}

/** Adds the limit to every route whose scope is `client` (and client reads of `read` routes). */
export function registerRateLimit(app: FastifyInstance, opts: RateLimitOptions | undefined): void {
  if (!opts || opts.perSec <= 0) return;
  const buckets = new TokenBuckets(opts);
  app.addHook('onRequest', async (req, reply) => {
    const scope = req.routeOptions.config.scope;
    const limited = scope === 'client' || (scope === 'read' && req.caller !== 'runner');
    if (!limited) return;
    const waitMs = buckets.take(clientKey(req));
    if (waitMs === 0) return;
    const body: ErrorBody = {
      error: {
        code: 'RATE_LIMITED',
        message: `rate limit of ${opts.perSec} requests/s (burst ${opts.burst}) exceeded; retry after the Retry-After seconds`,
      },
    };
    return reply
      .status(429)
      .header('retry-after', String(Math.max(1, Math.ceil(waitMs / 1000))))
      .send(body);
  });
}
