import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import {
  RegisterTypesBody,
  RegisterTypesReply,
  RunnerParams,
  SessionTypeList,
} from '../../protocol/schemas.js';
import { listTypeRegistrations, registerSessionTypes, typeSchemas } from '../../store/types.js';
import { BUILT_IN_TYPES } from '../session-types.js';
import { sessionTypeViews } from '../views.js';

/** Session types: runners register theirs with input schemas; clients read which schema each type has. */
export async function typeRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;

  // A runner's whole set: replaces what it registered before (at start, and when the API asks again).
  app.put(
    '/v1/runners/:runnerId/types',
    {
      config: { scope: 'runner' },
      schema: { params: RunnerParams, body: RegisterTypesBody, response: { 200: RegisterTypesReply } },
    },
    async (req) => {
      const types = app.sessionTypes.prepare(req.body.types);
      const rows = await registerSessionTypes(db, req.params.runnerId, types, app.sessionTypes.windows);
      app.sessionTypes.registered(req.params.runnerId);
      return { types: rows.map((r) => ({ name: r.type, schemaHash: r.schema_hash })) };
    },
  );

  app.get(
    '/v1/types',
    { config: { scope: 'client' }, schema: { response: { 200: SessionTypeList } } },
    async () => {
      const rows = await listTypeRegistrations(db, app.sessionTypes.windows);
      // The schemas shown are the ones in force: each type's winner (its first row).
      const winners = new Set<string>();
      let last: string | undefined;
      for (const r of rows) {
        if (r.type !== last && r.schema_hash !== null) winners.add(r.schema_hash);
        last = r.type;
      }
      const schemas = await typeSchemas(db, [...winners]);
      return { types: sessionTypeViews(rows, schemas, BUILT_IN_TYPES) };
    },
  );
}
