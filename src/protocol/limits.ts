import { Type, type Static } from '@sinclair/typebox';
import type * as wire from '@session-framework/sdk';
import { fillText, hasPlaceholder } from './placeholders.js';
import type { Same } from './schemas.js';

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
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type LimitView = wire.LimitView;

export const LimitList = Type.Object({ items: Type.Array(LimitView) });
export type LimitList = wire.LimitList;

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
}>;
