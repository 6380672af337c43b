import { Type, type Static } from '@sinclair/typebox';
import type * as wire from '@session-framework/sdk';
import { fillText, hasPlaceholder } from './placeholders.js';
import { LeaseToken, RunnerIdSchema, SessionId, type Same } from './schemas.js';

/** Request and answer schemas of /v1/limits; each is the SDK's type of the same name (checked below). */

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** Longest key: a host name is at most 253 characters; 200 is the bound of every other key. */
export const CONCURRENCY_KEY_MAX = 200;
export const ConcurrencyKey = Type.String({ minLength: 1, maxLength: CONCURRENCY_KEY_MAX });

export const LimitParams = Type.Object({ key: ConcurrencyKey }, { additionalProperties: false });

export const PutLimitBody = Type.Object(
  {
    concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    perMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
  },
  { additionalProperties: false },
);
export type PutLimitBody = wire.PutLimitBody;

export const LimitView = Type.Object({
  key: Type.String(),
  concurrency: Nullable(Type.Integer()),
  perMinute: Nullable(Type.Integer()),
  running: Type.Integer(),
  waiting: Type.Integer(),
  claimedLastMinute: Nullable(Type.Integer()),
  releaseAt: Nullable(Type.String()),
  backoffUntil: Nullable(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type LimitView = wire.LimitView;

export const LimitList = Type.Object({ items: Type.Array(LimitView) });
export type LimitList = wire.LimitList;

export const BackoffParams = Type.Object(
  { runnerId: RunnerIdSchema, sessionId: SessionId },
  { additionalProperties: false },
);

export const ReportBackoffBody = Type.Object(
  {
    leaseToken: LeaseToken,
    retryAfterMs: Type.Integer({ minimum: 0, maximum: 366 * 86_400_000 }),
    status: Type.Integer({ minimum: 100, maximum: 599 }),
    url: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false },
);
export type ReportBackoffBody = wire.ReportBackoffBody;

export const ReportBackoffReply = Type.Object({
  key: Nullable(Type.String()),
  backoffUntil: Nullable(Type.String()),
});
export type ReportBackoffReply = wire.ReportBackoffReply;

/** The navigation statuses whose Retry-After a runner reports. */
export const BACKOFF_STATUSES: readonly number[] = [429, 503];

/**
 * A Retry-After header's wait in ms: delay-seconds (`120`) or an HTTP date, from `now`; undefined when
 * it is neither (RFC 9110 §10.2.3).
 */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at) || !/[A-Za-z]/.test(v)) return undefined;
  return Math.max(0, at - now);
}

interface StepLike {
  action?: unknown;
  url?: unknown;
  steps?: unknown;
  else?: unknown;
}

/** The first goto of a flow's steps, nested ones included, in the order they are written. */
function firstGoto(steps: unknown): string | undefined {
  if (!Array.isArray(steps)) return undefined;
  for (const s of steps as StepLike[]) {
    if (s && typeof s === 'object') {
      if (s.action === 'goto' && typeof s.url === 'string') return s.url;
      const inner = firstGoto(s.steps) ?? firstGoto(s.else);
      if (inner !== undefined) return inner;
    }
  }
  return undefined;
}

/**
 * A flow's default concurrency key: the host of its first goto, its placeholders filled from the input;
 * undefined when there is none, or its URL has a placeholder the input cannot fill or is not a URL.
 */
export function flowConcurrencyKey(input: unknown): string | undefined {
  if (!input || typeof input !== 'object') return undefined;
  const o = input as Record<string, unknown>;
  let url = firstGoto(o.steps);
  if (url === undefined) return undefined;
  if (hasPlaceholder(url)) {
    const filled = fillText(url, o);
    if (!('text' in filled)) return undefined;
    url = filled.text;
  }
  try {
    const host = new URL(url).host;
    return host && host.length <= CONCURRENCY_KEY_MAX ? host : undefined;
  } catch {
    return undefined;
  }
}

type Agree<T extends Record<string, true>> = T;
type _LimitWireAgreement = Agree<{
  PutLimitBody: Same<Static<typeof PutLimitBody>, wire.PutLimitBody>;
  LimitView: Same<Static<typeof LimitView>, wire.LimitView>;
  LimitList: Same<Static<typeof LimitList>, wire.LimitList>;
  ReportBackoffBody: Same<Static<typeof ReportBackoffBody>, wire.ReportBackoffBody>;
  ReportBackoffReply: Same<Static<typeof ReportBackoffReply>, wire.ReportBackoffReply>;
}>;
