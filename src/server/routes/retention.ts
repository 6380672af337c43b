import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { RetentionView } from '../../protocol/retention.js';
import { retentionTotals } from '../../store/retention.js';

/** GET /v1/retention: this replica's settings and what retention removed (docs/operations.md#retention). */
export async function retentionRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;
  const off = { succeeded: 0, failed: 0, error: 0, cancelled: 0 };

  app.get(
    '/v1/retention',
    { config: { scope: 'client' }, schema: { response: { 200: RetentionView } } },
    async (): Promise<RetentionView> => {
      const t = await retentionTotals(db);
      return {
        retentionMs: { ...(app.deps.retention ?? off) },
        pruned: t.pruned,
        prunedArtifactBytes: t.artifactBytes,
        orphanFolders: t.orphanFolders,
        lastRunAt: t.lastRunAt?.toISOString() ?? null,
      };
    },
  );
}
