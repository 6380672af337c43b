import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ConfigError } from '../core/errors.js';
import { isLoopbackAddress, keyBytes, type Config } from '../core/config.js';
import { createLogger, type Logger } from '../core/log.js';
import { VERSION } from '../core/version.js';
import { createDb, type Db } from '../store/db.js';
import { migrate } from '../store/migrate.js';
import { Notifier } from '../store/notify.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../store/embedded.js';
import { buildApp } from './app.js';
import type { ArtifactStore } from './artifact-store.js';
import { artifactStoreSpec, createArtifactStore } from './artifact-store-config.js';
import { hostPolicy } from './auth.js';
import { Reaper } from './reaper.js';
import { Retention, retentionSettings } from './retention.js';
import { LocalSessionFolders } from './retention-files.js';
import { Scheduler } from './schedules.js';
import { DEFAULT_ALERT_THRESHOLDS } from './alerts.js';
import { parseTargetPolicy } from '../protocol/targets.js';

export const API_CONFIG_KEYS = [
  'port',
  'host',
  'allowedHosts',
  'apiInternalUrl',
  'databaseUrl',
  'dataDir',
  'artifactsDir',
  'artifactsUrl',
  's3Endpoint',
  's3Region',
  's3ForcePathStyle',
  'artifactsRedirect',
  'awsAccessKeyId',
  'awsSecretAccessKey',
  'awsSessionToken',
  'apiToken',
  'runnerToken',
  'staleSessionTimeoutMs',
  'reaperIntervalMs',
  'dbPoolSize',
  'dbPollOnly',
  'maxBodyBytes',
  'maxArtifactBytes',
  'logLevel',
  'alertRunnerDownMs',
  'alertFailureRate',
  'alertFailureWindowMs',
  'alertQueueBackupFactor',
  'runnerRetentionMs',
  'rateLimitPerSec',
  'rateLimitBurst',
  'allowedTargets',
  'allowPrivateTargets',
  'webhookRetryMs',
  'webhookBackoffMs',
  'webhookTimeoutMs',
  'webhookConcurrency',
  'stateEncryptionKey',
  'stateTtlMs',
  'retentionMs',
  'retentionSucceededMs',
  'retentionFailedMs',
  'retentionErrorMs',
  'retentionCancelledMs',
  'retentionIntervalMs',
] as const;

export type ApiConfig = Config<(typeof API_CONFIG_KEYS)[number]>;

export interface RunningApi {
  url: string;
  port: number;
  app: FastifyInstance;
  db: Db;
  databaseUrl: string;
  embedded: EmbeddedPostgres | undefined;
  log: Logger;
  stop(): Promise<void>;
}

/** Shortest API_TOKEN / RUNNER_TOKEN accepted when the API is bound beyond loopback. */
export const MIN_TOKEN_LENGTH = 16;

export type ResolveHost = (host: string) => Promise<string[]>;
const resolveHost: ResolveHost = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/**
 * Whether HOST binds loopback only: an address literal is checked as it is; a name is resolved and every
 * address it has must be loopback (`127.lan.example` is a name, whatever it starts with).
 */
export async function bindsLoopbackOnly(host: string, resolve: ResolveHost = resolveHost): Promise<boolean> {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare) !== 0) return isLoopbackAddress(bare);
  let addresses: string[];
  try {
    addresses = await resolve(bare);
  } catch (err) {
    throw new ConfigError(
      `HOST=${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): set HOST to an address or a name this machine resolves`,
    );
  }
  return addresses.length > 0 && addresses.every(isLoopbackAddress);
}

/**
 * Refuses unsafe auth setups with a message naming the variable to set; answers whether the bind is
 * loopback only (the one case where no tokens are allowed).
 */
export async function checkAuthConfig(
  cfg: Pick<ApiConfig, 'host' | 'apiToken' | 'runnerToken'>,
  resolve: ResolveHost = resolveHost,
): Promise<{ loopback: boolean }> {
  const hasApi = cfg.apiToken !== undefined;
  const hasRunner = cfg.runnerToken !== undefined;
  if (hasApi !== hasRunner) {
    throw new ConfigError(
      `${hasApi ? 'RUNNER_TOKEN' : 'API_TOKEN'} is not set: set both API_TOKEN and RUNNER_TOKEN, or neither (loopback only)`,
    );
  }
  if (hasApi && cfg.apiToken === cfg.runnerToken)
    throw new ConfigError('API_TOKEN and RUNNER_TOKEN must differ');
  const loopback = await bindsLoopbackOnly(cfg.host, resolve);
  if (!hasApi && !loopback) {
    throw new ConfigError(
      `HOST=${cfg.host} is not loopback and no tokens are set: set API_TOKEN and RUNNER_TOKEN (or --api-token/--runner-token), or bind HOST=127.0.0.1`,
    );
  }
  if (!loopback) {
    for (const [name, value] of [
      ['API_TOKEN', cfg.apiToken],
      ['RUNNER_TOKEN', cfg.runnerToken],
    ] as const) {
      if (value !== undefined && value.length < MIN_TOKEN_LENGTH) {
        throw new ConfigError(
          `${name} is ${value.length} characters: beyond loopback (HOST=${cfg.host}) tokens need at least ${MIN_TOKEN_LENGTH}, e.g. openssl rand -hex 24`,
        );
      }
    }
  }
  return { loopback };
}

/** Starts Postgres (embedded unless DATABASE_URL), migrates, and serves the API with its reaper. */
export async function startApi(
  cfg: ApiConfig,
  opts: { log?: Logger; embedded?: EmbeddedPostgres } = {},
): Promise<RunningApi> {
  const { loopback } = await checkAuthConfig(cfg);
  const hosts = hostPolicy(cfg.allowedHosts, cfg.apiToken !== undefined);
  const log = opts.log ?? createLogger(cfg.logLevel, { component: 'api' });
  const storeSpec = artifactStoreSpec(cfg);
  let embedded = opts.embedded;
  let ownEmbedded = false;
  let databaseUrl = cfg.databaseUrl;
  if (databaseUrl === undefined) {
    if (!embedded) {
      embedded = await startEmbeddedPostgres(cfg.dataDir);
      ownEmbedded = true;
      log.info({ port: embedded.port, dataDir: embedded.dataDir }, 'embedded Postgres ready');
    }
    databaseUrl = embedded.url;
  }
  const db = createDb({
    connectionString: databaseUrl,
    max: cfg.dbPoolSize,
    applicationName: 'session-framework-api',
  });
  let notifier: Notifier | undefined;
  let app: FastifyInstance | undefined;
  let artifactStore: ArtifactStore | undefined;
  try {
    artifactStore = await createArtifactStore(storeSpec);
    const applied = await migrate(db);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    if (!cfg.dbPollOnly) {
      notifier = new Notifier(databaseUrl);
      await notifier.start();
    }
    app = await buildApp({
      db,
      notifier,
      auth: { apiToken: cfg.apiToken, runnerToken: cfg.runnerToken, protectOps: !loopback },
      hostPolicy: hosts,
      internalUrl: cfg.apiInternalUrl,
      staleSessionTimeoutMs: cfg.staleSessionTimeoutMs,
      maxBodyBytes: cfg.maxBodyBytes,
      maxArtifactBytes: cfg.maxArtifactBytes,
      rateLimit: { perSec: cfg.rateLimitPerSec, burst: cfg.rateLimitBurst },
      artifactsDir: path.resolve(cfg.artifactsDir ?? path.join(cfg.dataDir, 'artifacts')),
      artifactStore,
      logger: log,
      version: VERSION,
      alertThresholds: {
        ...DEFAULT_ALERT_THRESHOLDS,
        runnerDownMs: cfg.alertRunnerDownMs,
        failureRate: cfg.alertFailureRate,
        recentWindowMs: cfg.alertFailureWindowMs,
        queueBackupFactor: cfg.alertQueueBackupFactor,
      },
      runnerRetentionMs: cfg.runnerRetentionMs,
      webhooks: {
        policy: parseTargetPolicy(cfg),
        retryMs: cfg.webhookRetryMs,
        backoffMs: cfg.webhookBackoffMs,
        timeoutMs: cfg.webhookTimeoutMs,
        concurrency: cfg.webhookConcurrency,
      },
      states: {
        encryptionKey:
          cfg.stateEncryptionKey === undefined
            ? undefined
            : keyBytes(cfg.stateEncryptionKey, 'STATE_ENCRYPTION_KEY'),
        defaultTtlMs: cfg.stateTtlMs,
      },
      retention: retentionSettings(cfg),
    });
    await app.listen({ port: cfg.port, host: cfg.host });
  } catch (err) {
    await app?.close().catch(() => {});
    await artifactStore?.close();
    await notifier?.stop();
    await db.end().catch(() => {});
    if (ownEmbedded) await embedded?.stop();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new ConfigError(`port ${cfg.port} on ${cfg.host} is in use: set PORT (or --port) to a free port`);
    }
    throw err;
  }
  const reaper = new Reaper(
    db,
    cfg.reaperIntervalMs,
    Math.max(5000, Math.round(cfg.staleSessionTimeoutMs / 2)),
    log,
  );
  reaper.start();
  // Pruned sessions' artifacts go through the store; the orphan sweep walks a local directory only.
  const retention = new Retention(
    db,
    artifactStore,
    {
      settings: retentionSettings(cfg),
      intervalMs: cfg.retentionIntervalMs,
      minAgeMs: cfg.alertFailureWindowMs,
    },
    storeSpec.kind === 'local' ? new LocalSessionFolders(storeSpec.dir) : undefined,
    log,
  );
  retention.start();
  const scheduler = new Scheduler(db, 1000, log, (t) => app.sessionTypes.withTypeDefaults(t));
  scheduler.start();
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : cfg.port;
  const host = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host === '0.0.0.0' ? '127.0.0.1' : cfg.host;
  const running = app;
  return {
    url: `http://${host}:${port}`,
    port,
    app: running,
    db,
    databaseUrl,
    embedded,
    log,
    stop: async () => {
      await reaper.stop();
      await retention.stop();
      await scheduler.stop();
      await running.close();
      await artifactStore.close();
      await notifier?.stop();
      await db.end().catch(() => {});
      if (ownEmbedded) await embedded?.stop();
    },
  };
}
