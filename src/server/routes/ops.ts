import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { AlertList, QueueView, SchedulerConfigBody, SchedulerConfigView } from '../../protocol/schemas.js';
import { ping } from '../../store/db.js';
import { getSchedulerConfig, queueStats, setSchedulerConfig } from '../../store/runners.js';
import { RUNNER_LIVE_MS } from './runners.js';
import { openApiDocument } from '../openapi.js';
import { dashboardRoutes } from '../dashboard.js';
import { fleetAlerts, opsSettings, statsRoutes } from './stats.js';

export async function opsRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;

  app.get('/healthz', { config: { scope: 'public' } }, async () => ({ ok: true }));

  app.get('/readyz', { config: { scope: 'public' } }, async (_req, reply) => {
    try {
      await ping(db);
      return { ok: true };
    } catch {
      return reply
        .status(503)
        .send({ ok: false, error: { code: 'UNAVAILABLE', message: 'database unavailable' } });
    }
  });

  app.get('/v1/queue', { config: { scope: 'client' }, schema: { response: { 200: QueueView } } }, async () =>
    queueStats(db, RUNNER_LIVE_MS),
  );

  app.get(
    '/v1/alerts',
    { config: { scope: 'client' }, schema: { response: { 200: AlertList } } },
    async () => {
      const { alerts } = await fleetAlerts(db, opsSettings(app));
      return { items: alerts };
    },
  );

  app.get(
    '/v1/config/scheduler',
    { config: { scope: 'client' }, schema: { response: { 200: SchedulerConfigView } } },
    async () => {
      const c = await getSchedulerConfig(db);
      return { maxConcurrency: c.max_concurrency, pollIntervalMs: c.poll_interval_ms };
    },
  );

  app.put(
    '/v1/config/scheduler',
    {
      config: { scope: 'client' },
      schema: { body: SchedulerConfigBody, response: { 200: SchedulerConfigView } },
    },
    async (req) => {
      const c = await setSchedulerConfig(db, req.body);
      app.heartbeats.configChanged();
      return { maxConcurrency: c.max_concurrency, pollIntervalMs: c.poll_interval_ms };
    },
  );

  app.get('/openapi.json', { config: { scope: 'ops' } }, async () =>
    openApiDocument(app.routeList, app.deps.version),
  );

  await app.register(dashboardRoutes);
  await app.register(statsRoutes);
}
