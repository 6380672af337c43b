import { Type, type Static } from '@sinclair/typebox';
import type * as wire from '@session-framework/sdk';
import type { Same } from './schemas.js';

/** The answer of GET /v1/retention; the SDK's type of the same name (checked below). */

const ByStatus = Type.Object({
  succeeded: Type.Integer(),
  failed: Type.Integer(),
  error: Type.Integer(),
  cancelled: Type.Integer(),
});

export const RetentionView = Type.Object({
  retentionMs: ByStatus,
  pruned: ByStatus,
  prunedArtifactBytes: Type.Integer(),
  orphanFolders: Type.Integer(),
  lastRunAt: Type.Union([Type.String(), Type.Null()]),
});
export type RetentionView = wire.RetentionView;

type Agree<T extends Record<string, true>> = T;
type _RetentionWireAgreement = Agree<{
  RetentionByStatus: Same<Static<typeof ByStatus>, wire.RetentionByStatus>;
  RetentionView: Same<Static<typeof RetentionView>, wire.RetentionView>;
}>;
