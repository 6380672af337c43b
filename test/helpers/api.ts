import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppDeps } from '../../src/server/app.js';
import { Notifier } from '../../src/store/notify.js';
import { Reaper } from '../../src/server/reaper.js';
import { Scheduler } from '../../src/server/schedules.js';
import { SfwClient } from '@session-framework/sdk';
import { freshDb } from './db.js';
import type { Db } from '../../src/store/db.js';

export const API_TOKEN = 'test-api-token';
export const RUNNER_TOKEN = 'test-runner-token';

export interface TestApi {
  url: string;
  app: FastifyInstance;
  db: Db;
  databaseUrl: string;
  artifactsDir: string;
  /** Client with the API token (or none when auth is off). */
  client: SfwClient;
  /** Client with the runner token. */
  runnerClient: SfwClient;
  reaper: Reaper | undefined;
  scheduler: Scheduler | undefined;
  stop(): Promise<void>;
}

export interface TestApiOptions {
  auth?: boolean;
  pollOnly?: boolean;
  staleSessionTimeoutMs?: number;
  reaperIntervalMs?: number;
  maxBodyBytes?: number;
  maxArtifactBytes?: number;
  db?: { db: Db; url: string };
  /** Run the schedules' firing loop, as every API replica does (sleeping at most maxSleepMs). */
  schedules?: boolean | { maxSleepMs?: number };
  /** Extra AppDeps fields (alert thresholds, runner retention…). */
  deps?: Partial<AppDeps>;
  /** Listen on this port (default: any free one). */
  port?: number;
}

/** A real API over real HTTP on 127.0.0.1 with its own database. */
export async function startTestApi(label: string, opts: TestApiOptions = {}): Promise<TestApi> {
  const { db, url: databaseUrl } = opts.db ?? (await freshDb(label));
  const notifier = opts.pollOnly ? undefined : new Notifier(databaseUrl);
  await notifier?.start();
  const artifactsDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-artifacts-'));
  const auth = opts.auth ?? false;
  const deps: AppDeps = {
    db,
    notifier,
    auth: {
      apiToken: auth ? API_TOKEN : undefined,
      runnerToken: auth ? RUNNER_TOKEN : undefined,
      protectOps: auth,
    },
    staleSessionTimeoutMs: opts.staleSessionTimeoutMs ?? 30_000,
    maxBodyBytes: opts.maxBodyBytes ?? 32 * 1024 * 1024,
    maxArtifactBytes: opts.maxArtifactBytes ?? 10 * 1024 * 1024,
    artifactsDir,
    version: 'test',
    ...opts.deps,
  };
  const app = await buildApp(deps);
  await app.listen({ port: opts.port ?? 0, host: '127.0.0.1' });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const url = `http://127.0.0.1:${port}`;
  const reaper = opts.reaperIntervalMs
    ? new Reaper(
        db,
        opts.reaperIntervalMs,
        Math.max(1000, Math.round((opts.staleSessionTimeoutMs ?? 30_000) / 2)),
      )
    : undefined;
  reaper?.start();
  const scheduler = opts.schedules
    ? new Scheduler(
        db,
        opts.schedules === true ? 1000 : (opts.schedules.maxSleepMs ?? 1000),
        undefined,
        (t) => app.sessionTypes.withTypeDefaults(t),
      )
    : undefined;
  scheduler?.start();
  const client = new SfwClient({ baseUrl: url, token: auth ? API_TOKEN : undefined, retries: 0 });
  const runnerClient = new SfwClient({ baseUrl: url, token: auth ? RUNNER_TOKEN : undefined, retries: 0 });
  return {
    url,
    app,
    db,
    databaseUrl,
    artifactsDir,
    client,
    runnerClient,
    reaper,
    scheduler,
    stop: async () => {
      await reaper?.stop();
      await scheduler?.stop();
      await client.close();
      await runnerClient.close();
      await app.close();
      await notifier?.stop();
      if (!opts.db) await db.end();
    },
  };
}
