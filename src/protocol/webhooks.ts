import { Type, type Static } from '@sinclair/typebox';
import { WEBHOOK_EVENTS } from '@session-framework/sdk';
import type * as wire from '@session-framework/sdk';
import { UUID_PATTERN } from '../core/ids.js';
import type { Same } from './schemas.js';

/** Request and answer schemas of /v1/webhooks; each is the SDK's type of the same name (checked below). */

const literals = <T extends readonly string[]>(values: T) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values] });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;
/** The session events a delivery carries (`session.finished` is a subscription, never a delivery's type). */
export const SESSION_EVENT_TYPES = WEBHOOK_EVENTS.filter(
  (e): e is wire.SessionEventType => e !== 'session.finished',
);

const WebhookUrl = Type.String({ minLength: 1, maxLength: 2000, description: 'http or https URL' });
const WebhookEvents = Type.Array(literals(WEBHOOK_EVENTS), {
  minItems: 1,
  maxItems: WEBHOOK_EVENTS.length,
  uniqueItems: true,
});
// whsec_ + base64 of 24 to 64 bytes (Standard Webhooks).
const WebhookSecret = Type.String({
  minLength: 6 + 32,
  maxLength: 6 + 88,
  pattern: '^whsec_[A-Za-z0-9+/]+={0,2}$',
  description: 'whsec_ followed by the base64 of 24 to 64 random bytes',
});

export const CreateWebhookBody = Type.Object(
  {
    url: WebhookUrl,
    events: WebhookEvents,
    secret: Type.Optional(WebhookSecret),
    enabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type CreateWebhookBody = wire.CreateWebhookBody;

export const UpdateWebhookBody = Type.Object(
  {
    url: Type.Optional(WebhookUrl),
    events: Type.Optional(WebhookEvents),
    secret: Type.Optional(WebhookSecret),
    enabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type UpdateWebhookBody = wire.UpdateWebhookBody;

export const WebhookView = Type.Object({
  id: Type.String(),
  url: Type.String(),
  events: Type.Array(literals(WEBHOOK_EVENTS)),
  secret: Type.String(),
  enabled: Type.Boolean(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type WebhookView = wire.WebhookView;

export const WebhookList = Type.Object({
  items: Type.Array(WebhookView),
  nextCursor: Nullable(Type.String()),
});

export const WebhookDeliveryView = Type.Object({
  id: Type.String(),
  webhookId: Type.String(),
  sessionId: Type.String(),
  event: literals(SESSION_EVENT_TYPES),
  status: literals(DELIVERY_STATUSES),
  attempts: Type.Integer(),
  lastStatusCode: Nullable(Type.Integer()),
  lastError: Nullable(Type.String()),
  nextAttemptAt: Nullable(Type.String()),
  lastAttemptAt: Nullable(Type.String()),
  createdAt: Type.String(),
  deliveredAt: Nullable(Type.String()),
  expiresAt: Nullable(Type.String()),
});
export type WebhookDeliveryView = wire.WebhookDeliveryView;

export const WebhookDeliveryList = Type.Object({
  items: Type.Array(WebhookDeliveryView),
  nextCursor: Nullable(Type.String()),
});

export const WebhookParams = Type.Object(
  { id: Type.String({ pattern: UUID_PATTERN }) },
  { additionalProperties: false },
);
export const DeliveryParams = Type.Object(
  { id: Type.String({ pattern: UUID_PATTERN }), deliveryId: Type.String({ pattern: UUID_PATTERN }) },
  { additionalProperties: false },
);
export const GetWebhookQuery = Type.Object(
  { reveal: Type.Optional(Type.Boolean({ description: 'Answer the secret in full' })) },
  { additionalProperties: false },
);
export const ListWebhooksQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);
export const ListDeliveriesQuery = Type.Object(
  {
    status: Type.Optional(literals(DELIVERY_STATUSES)),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);

type Agree<T extends Record<string, true>> = T;
type _WebhookWireAgreement = Agree<{
  CreateWebhookBody: Same<Static<typeof CreateWebhookBody>, wire.CreateWebhookBody>;
  UpdateWebhookBody: Same<Static<typeof UpdateWebhookBody>, wire.UpdateWebhookBody>;
  WebhookView: Same<Static<typeof WebhookView>, wire.WebhookView>;
  WebhookList: Same<Static<typeof WebhookList>, wire.WebhookList>;
  WebhookDeliveryView: Same<Static<typeof WebhookDeliveryView>, wire.WebhookDeliveryView>;
  WebhookDeliveryList: Same<Static<typeof WebhookDeliveryList>, wire.WebhookDeliveryList>;
  ListWebhooksQuery: Same<Static<typeof ListWebhooksQuery>, wire.ListWebhooksQuery>;
  ListDeliveriesQuery: Same<Static<typeof ListDeliveriesQuery>, wire.ListDeliveriesQuery>;
  DeliveryStatus: Same<(typeof DELIVERY_STATUSES)[number], wire.DeliveryStatus>;
}>;
