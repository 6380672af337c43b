import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { SfwError } from '../core/errors.js';

/** Two scopes: the API token (clients) and the runner token (runners). Compared in constant time. */
export type Scope = 'client' | 'runner' | 'public' | 'ops';

export interface AuthConfig {
  apiToken?: string | undefined;
  runnerToken?: string | undefined;
  /** Require the API token for /metrics and /openapi.json (when bound beyond loopback). */
  protectOps: boolean;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function same(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(h.trim());
  return m?.[1];
}

export type Caller = 'client' | 'runner' | 'anonymous';

/** Throws 401/403 unless the request may use an endpoint of this scope; answers who called. */
export function authorize(cfg: AuthConfig, req: FastifyRequest, scope: Scope): Caller {
  const enabled = cfg.apiToken !== undefined || cfg.runnerToken !== undefined;
  if (scope === 'public' || !enabled) return 'anonymous';
  if (scope === 'ops' && !cfg.protectOps) return 'anonymous';
  const token = bearer(req);
  if (token === undefined)
    throw new SfwError('UNAUTHORIZED', 'missing token: send Authorization: Bearer <token>');
  const isClient = cfg.apiToken !== undefined && same(token, cfg.apiToken);
  const isRunner = cfg.runnerToken !== undefined && same(token, cfg.runnerToken);
  if (!isClient && !isRunner) throw new SfwError('UNAUTHORIZED', 'invalid token');
  const caller: Caller = isClient ? 'client' : 'runner';
  const wanted = scope === 'ops' ? 'client' : scope;
  if (caller !== wanted) {
    throw new SfwError(
      'FORBIDDEN',
      `this endpoint needs the ${wanted === 'client' ? 'API' : 'runner'} token`,
    );
  }
  return caller;
}
