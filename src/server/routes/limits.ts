import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ValidationError } from '../../core/errors.js';
import {
  BackoffParams,
  LimitList,
  LimitParams,
  LimitView,
  PutLimitBody,
  ReportBackoffBody,
  ReportBackoffReply,
} from '../../protocol/limits.js';
import { findUnstorable } from '../../protocol/text.js';
import {
  deleteLimit,
  getLimit,
  listLimits,
  putLimit,
  recordBackoff,
  type LimitRow,
} from '../../store/limits.js';

/** Per-key limits (docs/limits.md): set, read and drop a key's bound; the claim enforces it. */

export function limitView(r: LimitRow): LimitView {
  return {
    key: r.key,
    concurrency: r.concurrency,
    perMinute: r.per_minute,
    running: r.running,
    waiting: r.waiting,
    claimedLastMinute: r.per_minute === null ? null : r.claimed_last_minute,
    releaseAt: r.release_at && r.waiting > 0 ? r.release_at.toISOString() : null,
    backoffUntil: r.backoff_until ? r.backoff_until.toISOString() : null,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

function checkKey(key: string): void {
  const bad = findUnstorable(key, 'params.key');
  if (bad) throw new ValidationError(bad.path, bad.message);
}

export async function limitRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;

  app.get(
    '/v1/limits',
    { config: { scope: 'client' }, schema: { response: { 200: LimitList } } },
    async () => ({ items: (await listLimits(db)).map(limitView) }),
  );

  app.get(
    '/v1/limits/:key',
    { config: { scope: 'client' }, schema: { params: LimitParams, response: { 200: LimitView } } },
    async (req) => {
      checkKey(req.params.key);
      return limitView(await getLimit(db, req.params.key));
    },
  );

  app.put(
    '/v1/limits/:key',
    {
      config: { scope: 'client' },
      schema: { params: LimitParams, body: PutLimitBody, response: { 200: LimitView } },
    },
    async (req) => {
      checkKey(req.params.key);
      if (req.body.concurrency === undefined && req.body.perMinute === undefined)
        throw new ValidationError('body', 'must set concurrency, perMinute or both');
      return limitView(await putLimit(db, req.params.key, req.body));
    },
  );

  // A runner's session met HTTP 429/503 with Retry-After: its key claims nothing until then (fenced).
  app.post(
    '/v1/runners/:runnerId/sessions/:sessionId/backoff',
    {
      config: { scope: 'runner' },
      schema: { params: BackoffParams, body: ReportBackoffBody, response: { 200: ReportBackoffReply } },
    },
    async (req) => {
      const { runnerId, sessionId } = req.params;
      const out = await recordBackoff(
        db,
        { sessionId, runnerId, leaseToken: req.body.leaseToken },
        req.body.retryAfterMs,
      );
      if (out.key !== null)
        req.log.info(
          { sessionId, key: out.key, status: req.body.status, until: out.backoffUntil },
          'site asked to back off',
        );
      return { key: out.key, backoffUntil: out.backoffUntil ? out.backoffUntil.toISOString() : null };
    },
  );

  app.delete(
    '/v1/limits/:key',
    { config: { scope: 'client' }, schema: { params: LimitParams, response: { 200: LimitView } } },
    async (req) => {
      checkKey(req.params.key);
      return limitView(await deleteLimit(db, req.params.key));
    },
  );
}
