import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { generateWebhookSecret, type WebhookEventName } from '@session-framework/sdk';
import { ValidationError } from '../../core/errors.js';
import { isUuid } from '../../core/ids.js';
import { checkTarget, parseTargetPolicy } from '../../protocol/targets.js';
import {
  CreateWebhookBody,
  DeliveryParams,
  GetWebhookQuery,
  ListDeliveriesQuery,
  ListWebhooksQuery,
  UpdateWebhookBody,
  WebhookDeliveryList,
  WebhookDeliveryView,
  WebhookList,
  WebhookParams,
  WebhookView,
} from '../../protocol/webhooks.js';
import {
  createWebhook,
  deleteWebhook,
  getWebhook,
  listDeliveries,
  listWebhooks,
  redeliver,
  updateWebhook,
  type DeliveryRow,
  type WebhookRow,
} from '../../store/webhooks.js';

const DEFAULT_RETRY_MS = 86_400_000;

/** The secret in full only when asked (create, change, ?reveal=true); else its prefix and last 4 characters. */
export function webhookView(r: WebhookRow, reveal: boolean): WebhookView {
  return {
    id: r.id,
    url: r.url,
    events: r.events as WebhookEventName[],
    secret: reveal ? r.secret : `whsec_…${r.secret.slice(-4)}`,
    enabled: r.enabled,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function deliveryView(r: DeliveryRow): WebhookDeliveryView {
  return {
    id: r.id,
    webhookId: r.webhook_id,
    sessionId: r.session_id,
    event: r.event as WebhookDeliveryView['event'],
    status: r.status,
    attempts: r.attempts,
    lastStatusCode: r.last_status_code,
    lastError: r.last_error,
    nextAttemptAt: r.status === 'pending' ? r.next_attempt_at.toISOString() : null,
    lastAttemptAt: iso(r.last_attempt_at),
    createdAt: r.created_at.toISOString(),
    deliveredAt: iso(r.delivered_at),
    expiresAt: iso(r.expires_at),
  };
}

const encodeCursor = (id: string) => Buffer.from(id).toString('base64url');
function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString();
  if (!isUuid(id)) throw new ValidationError('query.cursor', 'is not a cursor this API returned');
  return id;
}

export async function webhookRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;
  const policy = app.deps.webhooks?.policy ?? parseTargetPolicy({});
  const retryMs = app.deps.webhooks?.retryMs ?? DEFAULT_RETRY_MS;

  /** The URL under the target policy (checked again, resolved, at every send). */
  const checkUrl = (url: string) => {
    const verdict = checkTarget(policy, url);
    if (!verdict.ok) throw new ValidationError('body.url', verdict.reason);
  };

  app.post(
    '/v1/webhooks',
    { config: { scope: 'client' }, schema: { body: CreateWebhookBody, response: { 201: WebhookView } } },
    async (req, reply) => {
      checkUrl(req.body.url);
      const row = await createWebhook(db, {
        url: req.body.url,
        events: req.body.events,
        secret: req.body.secret ?? generateWebhookSecret(),
        enabled: req.body.enabled ?? true,
      });
      return reply.status(201).send(webhookView(row, true));
    },
  );

  app.get(
    '/v1/webhooks',
    {
      config: { scope: 'client' },
      schema: { querystring: ListWebhooksQuery, response: { 200: WebhookList } },
    },
    async (req) => {
      const page = await listWebhooks(db, {
        limit: req.query.limit ?? 50,
        before: req.query.cursor ? decodeCursor(req.query.cursor) : undefined,
      });
      const last = page.rows[page.rows.length - 1];
      return {
        items: page.rows.map((r) => webhookView(r, false)),
        nextCursor: page.more && last ? encodeCursor(last.id) : null,
      };
    },
  );

  app.get(
    '/v1/webhooks/:id',
    {
      config: { scope: 'client' },
      schema: { params: WebhookParams, querystring: GetWebhookQuery, response: { 200: WebhookView } },
    },
    async (req) => webhookView(await getWebhook(db, req.params.id), req.query.reveal === true),
  );

  app.patch(
    '/v1/webhooks/:id',
    {
      config: { scope: 'client' },
      schema: { params: WebhookParams, body: UpdateWebhookBody, response: { 200: WebhookView } },
    },
    async (req) => {
      if (req.body.url !== undefined) checkUrl(req.body.url);
      const row = await updateWebhook(db, req.params.id, req.body);
      return webhookView(row, req.body.secret !== undefined);
    },
  );

  app.delete(
    '/v1/webhooks/:id',
    { config: { scope: 'client' }, schema: { params: WebhookParams } },
    async (req, reply) => {
      await deleteWebhook(db, req.params.id);
      return reply.status(204).send();
    },
  );

  app.get(
    '/v1/webhooks/:id/deliveries',
    {
      config: { scope: 'client' },
      schema: {
        params: WebhookParams,
        querystring: ListDeliveriesQuery,
        response: { 200: WebhookDeliveryList },
      },
    },
    async (req) => {
      await getWebhook(db, req.params.id);
      const page = await listDeliveries(db, req.params.id, {
        limit: req.query.limit ?? 50,
        before: req.query.cursor ? decodeCursor(req.query.cursor) : undefined,
        status: req.query.status,
      });
      const last = page.rows[page.rows.length - 1];
      return {
        items: page.rows.map(deliveryView),
        nextCursor: page.more && last ? encodeCursor(last.id) : null,
      };
    },
  );

  app.post(
    '/v1/webhooks/:id/deliveries/:deliveryId/retry',
    {
      config: { scope: 'client' },
      schema: { params: DeliveryParams, response: { 200: WebhookDeliveryView } },
    },
    async (req) => deliveryView(await redeliver(db, req.params.id, req.params.deliveryId, retryMs)),
  );
}
