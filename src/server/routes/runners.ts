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
import {
  completeSessions,
  exchange,
  renewLeases,
  requeueSessions,
  type CompletionItem,
  type CompletionOutcome,
} from '../../store/sessions.js';
import { getSchedulerConfig, listRunners, markRunnerStopped, recordHeartbeat } from '../../store/runners.js';
import { runnerView } from '../views.js';
import { requestGone } from '../waiters.js';
import { requestLog } from '../request-log.js';

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
      const deadline = Date.now() + (b.waitMs ?? 0);
      const gone = requestGone(reply.raw);
      // Completions carried by the claim are stored with the first claim, before any wait.
      let done = (b.complete ?? []).map(toCompletion);
      let completed: CompleteOutcome[] | undefined;
      for (;;) {
        // A runner that went away while waiting must not be handed sessions it will never run.
        if (gone.aborted && done.length === 0) return reply.send({ sessions: [] });
        const out = await exchange(
          db,
          {
            runnerId,
            types: b.types,
            slots: gone.aborted ? 0 : b.slots,
            leaseMs: staleSessionTimeoutMs,
            ...(b.maxConcurrency === undefined ? {} : { maxConcurrency: b.maxConcurrency }),
            ...(b.hostname === undefined ? {} : { hostname: b.hostname }),
            ...(b.version === undefined ? {} : { version: b.version }),
            ...(b.startedAt === undefined ? {} : { startedAt: b.startedAt }),
          },
          done,
        );
        if (done.length > 0) {
          completed = out.completed.map(outcomeView);
          done = [];
        }
        if (out.claimedCount > 0) {
          // An answer that never reaches the runner (connection cut, API shutting down) would strand these
          // sessions until their lease lapses: hand them back at once, fenced, without spending an attempt.
          const handBack = () => {
            const refs = out.claimed().map((r) => ({ id: r.id, leaseToken: r.leaseToken }));
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
        // A claim that delivered completions answers at once: the runner is told their outcomes without
        // waiting out a long-poll, and asks again.
        if (out.claimedCount > 0 || left(deadline) <= 0 || b.slots === 0 || completed || gone.aborted) {
          // The sessions' JSON comes from the database in the ClaimedSession shape: sent as it is.
          // (A string body is sent unserialized; it is a ClaimReply by construction, as the tests check.)
          const body = `{"sessions":${out.claimedJson}${completed ? `,"completed":${JSON.stringify(completed)}` : ''}}`;
          return reply.type('application/json; charset=utf-8').send(body as unknown as ClaimReply);
        }
        await app.waiters.waitForWork(Math.min(left(deadline), app.waiters.pollMs), gone);
      }
    },
  );

  app.post(
    '/v1/runners/:runnerId/heartbeat',
    {
      config: { scope: 'runner' },
      schema: { params: RunnerParams, body: HeartbeatBody, response: { 200: HeartbeatReply } },
    },
    async (req) => {
      const b = req.body;
      const runnerId = req.params.runnerId;
      await recordHeartbeat(db, {
        runnerId,
        activeSessions: b.activeSessions,
        maxConcurrency: b.maxConcurrency,
        ...(b.status === undefined ? {} : { status: b.status }),
        ...(b.hostname === undefined ? {} : { hostname: b.hostname }),
        ...(b.version === undefined ? {} : { version: b.version }),
        ...(b.startedAt === undefined ? {} : { startedAt: b.startedAt }),
        ...(b.memoryRssBytes === undefined ? {} : { memoryRssBytes: b.memoryRssBytes }),
        ...(b.browserMemoryBytes === undefined ? {} : { browserMemoryBytes: b.browserMemoryBytes }),
        ...(b.effectiveConcurrency === undefined ? {} : { effectiveConcurrency: b.effectiveConcurrency }),
      });
      const [leases, cfg] = await Promise.all([
        renewLeases(db, runnerId, b.sessions, staleSessionTimeoutMs),
        getSchedulerConfig(db),
      ]);
      return {
        config: { maxConcurrency: cfg.max_concurrency, pollIntervalMs: cfg.poll_interval_ms },
        cancel: leases.cancel,
        lost: leases.lost,
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
      items: (await completeSessions(db, req.body.items.map(toCompletion))).map(outcomeView),
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
      await markRunnerStopped(db, req.params.runnerId);
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

function left(deadline: number): number {
  return deadline - Date.now();
}

function toCompletion(i: CompleteItem): CompletionItem {
  return {
    id: i.id,
    leaseToken: i.leaseToken,
    status: i.status,
    ...(i.result === undefined ? {} : { result: i.result }),
    ...(i.errorMessage === undefined ? {} : { errorMessage: i.errorMessage }),
  };
}

function outcomeView(o: CompletionOutcome): CompleteOutcome {
  return o.outcome === 'accepted'
    ? { id: o.id, outcome: o.outcome, status: o.status }
    : { id: o.id, outcome: o.outcome };
}
