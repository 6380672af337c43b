import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import {
  ClaimBody,
  CompleteBatchBody,
  type CompleteItem,
  type CompleteOutcome,
  CompleteBatchReply,
  ClaimReply,
  HeartbeatBody,
  HeartbeatReply,
  RunnerList,
  RunnerParams,
  StopBody,
} from '../../protocol/schemas.js';
import { completeSessions, requeueSessions, type CompletionOutcome } from '../../store/sessions.js';
import { listRunners, markRunnerStopped } from '../../store/runners.js';
import { runnerView } from '../views.js';
import { requestGone } from '../waiters.js';
import { requestLog } from '../request-log.js';
import type { EventLog } from '../../core/log.js';
import { storableCompletion } from '../../protocol/text.js';

/** A runner whose last heartbeat is older than this is not live (the guide's "runner down" threshold). */
export const RUNNER_LIVE_MS = 60_000;

export async function runnerRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db, staleSessionTimeoutMs } = app.deps;

  app.post(
    '/v1/runners/:runnerId/claim',
    {
      config: { scope: 'runner' },
      schema: { params: RunnerParams, body: ClaimBody, response: { 200: ClaimReply } },
    },
    async (req, reply) => {
      const b = req.body;
      const runnerId = req.params.runnerId;
      const gone = requestGone(reply.raw);
      const done = (b.complete ?? []).map((i) => toCompletion(i, req.log));
      const seen = {
        runnerId,
        ...(b.maxConcurrency === undefined ? {} : { maxConcurrency: b.maxConcurrency }),
        ...(b.hostname === undefined ? {} : { hostname: b.hostname }),
        ...(b.version === undefined ? {} : { version: b.version }),
        ...(b.startedAt === undefined ? {} : { startedAt: b.startedAt }),
      };
      let claimedJson: string;
      let completed: CompleteOutcome[] | undefined;
      if (done.length > 0 || !b.waitMs || b.slots === 0) {
        // Completions are stored (and their slots used again) at once, and a claim that delivered them
        // answers at once: the runner hears their outcomes without waiting out a long-poll, and asks again.
        // A claim that does not wait is one exchange too.
        const out = await app.exchanges.run({
          ...seen,
          types: b.types,
          slots: b.slots,
          leaseMs: staleSessionTimeoutMs,
          done,
        });
        claimedJson = out.claimedJson;
        if (done.length > 0) completed = out.completed.map(outcomeView);
      } else {
        // A waiting claim waits in memory; the replica's claim passes hand it sessions (src/server/claims.ts).
        claimedJson = await app.claims.wait({ ...seen, types: b.types, slots: b.slots }, b.waitMs, gone);
      }
      if (claimedJson !== '[]') {
        // An answer that never reaches the runner (connection cut, API shutting down) would strand these
        // sessions until their lease lapses: hand them back at once, fenced, without spending an attempt.
        const handBack = () => {
          const refs = (JSON.parse(claimedJson) as { id: string; leaseToken: string }[]).map((r) => ({
            id: r.id,
            leaseToken: r.leaseToken,
          }));
          requeueSessions(db, runnerId, refs).catch((err: unknown) =>
            requestLog(req).warn(
              { err: (err as Error).message },
              'undelivered claim not handed back; the reaper will',
            ),
          );
        };
        if (gone.aborted) handBack();
        else gone.addEventListener('abort', handBack, { once: true });
      }
      // The sessions' JSON comes from the database in the ClaimedSession shape: sent as it is.
      // (A string body is sent unserialized; it is a ClaimReply by construction, as the tests check.)
      const body = `{"sessions":${claimedJson}${completed ? `,"completed":${JSON.stringify(completed)}` : ''}}`;
      return reply.type('application/json; charset=utf-8').send(body as unknown as ClaimReply);
    },
  );

  // Sessions of the heartbeat somebody watches live: the runner dials their live sockets.
  const live = (ids: string[]) => (ids.length > 0 ? { live: ids } : {});
  app.post(
    '/v1/runners/:runnerId/heartbeat',
    {
      config: { scope: 'runner' },
      schema: { params: RunnerParams, body: HeartbeatBody, response: { 200: HeartbeatReply } },
    },
    async (req) => {
      const b = req.body;
      // A runner whose type registration this database lacks (a fresh one) is asked to register again.
      const register = app.sessionTypes.needsRegistration(req.params.runnerId).catch(() => false);
      const out = await app.heartbeats.submit({
        runnerId: req.params.runnerId,
        activeSessions: b.activeSessions,
        maxConcurrency: b.maxConcurrency,
        sessions: b.sessions,
        ...(b.status === undefined ? {} : { status: b.status }),
        ...(b.hostname === undefined ? {} : { hostname: b.hostname }),
        ...(b.version === undefined ? {} : { version: b.version }),
        ...(b.startedAt === undefined ? {} : { startedAt: b.startedAt }),
        ...(b.memoryRssBytes === undefined ? {} : { memoryRssBytes: b.memoryRssBytes }),
        ...(b.browserMemoryBytes === undefined ? {} : { browserMemoryBytes: b.browserMemoryBytes }),
        ...(b.effectiveConcurrency === undefined ? {} : { effectiveConcurrency: b.effectiveConcurrency }),
        ...(b.types === undefined ? {} : { types: b.types }),
      });
      return {
        config: { maxConcurrency: out.config.max_concurrency, pollIntervalMs: out.config.poll_interval_ms },
        cancel: out.cancel,
        lost: out.lost,
        ...((await register) ? { registerTypes: true } : {}),
        ...live(app.live.watched(b.sessions.map((s) => s.id))),
      };
    },
  );

  // Several completions in one request and one commit; each item fenced by its own lease token.
  app.post(
    '/v1/runners/:runnerId/complete',
    {
      config: { scope: 'runner' },
      schema: { params: RunnerParams, body: CompleteBatchBody, response: { 200: CompleteBatchReply } },
    },
    async (req) => ({
      items: (
        await completeSessions(
          db,
          req.body.items.map((i) => toCompletion(i, req.log)),
        )
      ).map(outcomeView),
    }),
  );

  app.post(
    '/v1/runners/:runnerId/stop',
    {
      config: { scope: 'runner' },
      schema: {
        params: RunnerParams,
        body: Type.Optional(StopBody),
        response: { 200: Type.Object({ requeued: Type.Array(Type.String()) }) },
      },
    },
    async (req) => {
      const requeued = await requeueSessions(db, req.params.runnerId, req.body?.requeue ?? []);
      app.claims.forgetRunner(req.params.runnerId);
      await markRunnerStopped(db, req.params.runnerId);
      // Its types' schemas may now be another runner's (other replicas see it within seconds).
      app.sessionTypes.invalidate();
      return { requeued };
    },
  );

  app.get(
    '/v1/runners',
    { config: { scope: 'client' }, schema: { response: { 200: RunnerList } } },
    async () => {
      const rows = await listRunners(db, app.deps.runnerRetentionMs);
      return { items: rows.map((r) => runnerView(r, RUNNER_LIVE_MS)) };
    },
  );
}

/** A runner's completion as stored; text Postgres cannot hold is replaced, not refused (the result stays). */
function toCompletion(item: CompleteItem, log: EventLog): CompleteItem {
  const { completion, replaced } = storableCompletion(item);
  if (replaced > 0)
    log.warn({ sessionId: completion.id, replaced }, 'characters Postgres cannot store replaced with U+FFFD');
  return completion;
}

function outcomeView(o: CompletionOutcome): CompleteOutcome {
  return o.outcome === 'accepted'
    ? { id: o.id, outcome: o.outcome, status: o.status }
    : { id: o.id, outcome: o.outcome };
}
