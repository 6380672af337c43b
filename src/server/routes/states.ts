import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { SfwError } from '../../core/errors.js';
import { LeaseToken } from '../../protocol/schemas.js';
import {
  SaveSessionStateBody,
  SessionStateParams,
  SessionStateReply,
  STATE_MAX_BYTES,
  STATE_VERSIONS_KEPT,
  StateDetail,
  StateList,
  StateParams,
  StateSaveReply,
  type StorageStateSchema,
} from '../../protocol/states.js';
import type { Static } from '@sinclair/typebox';
import {
  deleteState,
  getStateVersions,
  listStates,
  saveSessionState,
  sessionStateOptions,
  stateForSession,
} from '../../store/states.js';
import { openState, sealState, stateKey, type StateKey } from '../state-crypto.js';
import { stateDetailView, stateView } from '../views.js';

/** What the API does with named states: the key they are encrypted under, their default lifetime. */
export interface StateOptionsDeps {
  /** STATE_ENCRYPTION_KEY's 32 bytes; absent: states are stored in clear. */
  encryptionKey?: Buffer | undefined;
  /** STATE_TTL_MS: the lifetime of a saved version when its session gives no state.ttlMs. */
  defaultTtlMs?: number | undefined;
}

/**
 * Named states. Clients list, read (metadata only: a state's contents never leave the API to a client) and
 * delete them; a runner reads the state its session uses and saves the one it saves, both under the
 * session's lease and only the names the session itself carries.
 */
export async function stateRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;
  const opts = app.deps.states ?? {};
  const key: StateKey | undefined = opts.encryptionKey ? stateKey(opts.encryptionKey) : undefined;

  app.get(
    '/v1/states',
    { config: { scope: 'client' }, schema: { response: { 200: StateList } } },
    async () => ({ items: (await listStates(db)).map(stateView) }),
  );

  app.get(
    '/v1/states/:name',
    { config: { scope: 'client' }, schema: { params: StateParams, response: { 200: StateDetail } } },
    async (req) => stateDetailView(await getStateVersions(db, req.params.name)),
  );

  app.delete(
    '/v1/states/:name',
    { config: { scope: 'client' }, schema: { params: StateParams } },
    async (req, reply) => {
      await deleteState(db, req.params.name);
      return reply.status(204).send();
    },
  );

  app.get(
    '/v1/runners/:runnerId/sessions/:sessionId/state',
    {
      config: { scope: 'runner' },
      schema: {
        params: SessionStateParams,
        headers: Type.Object({ 'x-lease-token': LeaseToken }),
        response: { 200: SessionStateReply },
      },
    },
    async (req) => {
      const { runnerId, sessionId } = req.params;
      const row = await stateForSession(db, sessionId, runnerId, req.headers['x-lease-token']);
      const json = openState(
        row.name,
        row.version,
        { data: row.data, encrypted: row.encrypted, keyId: row.key_id },
        key,
      );
      return {
        name: row.name,
        version: row.version,
        storageState: JSON.parse(json.toString('utf8')) as Static<typeof StorageStateSchema>,
      };
    },
  );

  app.put(
    '/v1/runners/:runnerId/sessions/:sessionId/state',
    {
      config: { scope: 'runner' },
      bodyLimit: STATE_MAX_BYTES + 64 * 1024,
      schema: { params: SessionStateParams, body: SaveSessionStateBody, response: { 200: StateSaveReply } },
    },
    async (req) => {
      const { runnerId, sessionId } = req.params;
      const b = req.body;
      const options = await sessionStateOptions(db, sessionId, runnerId, b.leaseToken);
      const name = options?.save;
      if (name === undefined)
        throw new SfwError(
          'CONFLICT',
          `session ${sessionId} saves no named state (its state.save is not set)`,
        );
      const json = Buffer.from(JSON.stringify(b.storageState));
      if (json.length > STATE_MAX_BYTES)
        throw new SfwError(
          'PAYLOAD_TOO_LARGE',
          `the storage state is ${json.length} bytes, over the ${STATE_MAX_BYTES} a named state may hold`,
        );
      const sealed = sealState(name, json, key);
      return saveSessionState(db, {
        sessionId,
        runnerId,
        leaseToken: b.leaseToken,
        name,
        data: sealed.data,
        size: json.length,
        encrypted: sealed.encrypted,
        keyId: sealed.keyId,
        seenVersion: b.seenVersion,
        defaultTtlMs: opts.defaultTtlMs,
        keep: STATE_VERSIONS_KEPT,
      });
    },
  );
}
