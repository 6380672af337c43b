import { Type, type Static } from '@sinclair/typebox';
import type * as wire from '@session-framework/sdk';
import { LeaseToken, SessionId, RunnerIdSchema, StateName, type Same } from './schemas.js';

/** Request and answer schemas of /v1/states and the runner's state routes; each is the SDK's type (checked below). */

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** The largest storage state a runner may save (its JSON): cookies and local storage of a few sites fit. */
export const STATE_MAX_BYTES = 8 * 1024 * 1024;
/** Versions kept per name (older ones are deleted at each save). */
export const STATE_VERSIONS_KEPT = 5;

export const StateParams = Type.Object({ name: StateName }, { additionalProperties: false });
export const SessionStateParams = Type.Object(
  { runnerId: RunnerIdSchema, sessionId: SessionId },
  { additionalProperties: false },
);

const stateFields = {
  name: Type.String(),
  version: Type.Integer(),
  size: Type.Integer(),
  updatedAt: Type.String(),
  savedBySession: Nullable(Type.String()),
  encrypted: Type.Boolean(),
  expiresAt: Nullable(Type.String()),
};

export const StateView = Type.Object(stateFields);
export const StateList = Type.Object({ items: Type.Array(StateView) });
export const StateVersionView = Type.Object({
  version: Type.Integer(),
  size: Type.Integer(),
  encrypted: Type.Boolean(),
  savedAt: Type.String(),
  savedBySession: Nullable(Type.String()),
  expiresAt: Nullable(Type.String()),
});
export const StateDetail = Type.Object({ ...stateFields, versions: Type.Array(StateVersionView) });

/** Playwright's storage state; its entries are Playwright's own and passed through as they are. */
export const StorageStateSchema = Type.Object(
  {
    cookies: Type.Array(Type.Record(Type.String(), Type.Unknown()), { maxItems: 10_000 }),
    origins: Type.Array(Type.Record(Type.String(), Type.Unknown()), { maxItems: 10_000 }),
  },
  { additionalProperties: false },
);

export const SessionStateReply = Type.Object({
  name: Type.String(),
  version: Type.Integer(),
  storageState: StorageStateSchema,
});

export const SaveSessionStateBody = Type.Object(
  {
    leaseToken: LeaseToken,
    storageState: StorageStateSchema,
    seenVersion: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

export const StateSaveReply = Type.Object({
  name: Type.String(),
  saved: Type.Boolean(),
  version: Type.Integer(),
  message: Type.Optional(Type.String()),
});

type Agree<T extends Record<string, true>> = T;
type _StateWireAgreement = Agree<{
  StateView: Same<Static<typeof StateView>, wire.StateView>;
  StateList: Same<Static<typeof StateList>, wire.StateList>;
  StateVersionView: Same<Static<typeof StateVersionView>, wire.StateVersionView>;
  StateDetail: Same<Static<typeof StateDetail>, wire.StateDetail>;
  StorageState: Same<Static<typeof StorageStateSchema>, wire.StorageState>;
  SessionStateReply: Same<Static<typeof SessionStateReply>, wire.SessionStateReply>;
  SaveSessionStateBody: Same<Static<typeof SaveSessionStateBody>, wire.SaveSessionStateBody>;
  StateSaveReply: Same<Static<typeof StateSaveReply>, wire.StateSaveOutcome>;
}>;

/** The state a session starts from, as the runner read it. */
export type StateLoad =
  | { outcome: 'found'; name: string; version: number; storageState: wire.StorageState }
  /** Never saved, deleted or expired. */
  | { outcome: 'missing'; message: string }
  | { outcome: 'lease-lost' };

/** What became of a session's save. */
export type StateSaveResult =
  { outcome: 'saved' | 'skipped'; save: wire.StateSaveOutcome } | { outcome: 'lease-lost' };

/**
 * A session's named state as its executor reaches it (the runner supplies it, through the API under the
 * session's lease). Other failures (the API unreachable, a wrong STATE_ENCRYPTION_KEY) reject.
 */
export interface SessionStateAccess {
  load(): Promise<StateLoad>;
  save(storageState: wire.StorageState, seenVersion: number | undefined): Promise<StateSaveResult>;
}

export type StorageState = wire.StorageState;
