import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Config } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { VERSION } from '../core/version.js';
import { SfwClient } from '../sdk/client.js';
import { checkAddress, checkHost, createTargetCheck, parseTargetPolicy } from '../protocol/targets.js';
import { RunnerIdSchema } from '../protocol/schemas.js';
import {
  chromiumHelp,
  describeChromium,
  EGRESS_PROXY_HOST,
  findChromium,
  type FindChromiumOptions,
  type FoundChromium,
} from '../browser/chromium.js';
import type { UnpackProgress } from '../browser/packaged.js';
import { EgressProxy } from '../browser/egress.js';
import { BrowserPool } from '../browser/pool.js';
import { launchBrowserServer } from '../browser/server.js';
import { serverLiveSource } from '../browser/live.js';
import { loadSessionTypes } from '../sessions/registry.js';
import { executeSession } from '../sessions/execute.js';
import { videoRecorderFor, type CaptureSettings } from '../sessions/capture.js';
import { Runner } from './runner.js';
import type { ServedType } from './types.js';
import { REMOTE_BROWSER_TYPE, remoteBrowserExecutor } from './remote.js';
import { DEFAULT_BASE_BUDGET_BYTES, DEFAULT_SESSION_BUDGET_BYTES } from './admission.js';
import { DEFAULT_MAX_CONCURRENCY } from '../core/types.js';

/** Wires a Runner from the config schema: session types from SESSIONS_DIR, Chromium, the pool, the client. */

export const RUNNER_CONFIG_KEYS = [
  'apiBaseUrl',
  'runnerToken',
  'runnerId',
  'maxConcurrency',
  'pollIntervalMs',
  'heartbeatIntervalMs',
  'sessionsDir',
  'chromiumPath',
  'ffmpegPath',
  'maxCaptureBytes',
  'maxDownloads',
  'shutdownTimeoutMs',
  'allowedTargets',
  'allowPrivateTargets',
  'allowFlowEvaluate',
  'logLevel',
] as const;

export type RunnerConfig = Config<(typeof RUNNER_CONFIG_KEYS)[number]>;

// The API's own rule for runner ids (its route parameter schema), checked before the first call.
const RUNNER_ID_RE = new RegExp(RunnerIdSchema.pattern ?? '^[A-Za-z0-9][A-Za-z0-9._:@-]*$');
const RUNNER_ID_MAX = RunnerIdSchema.maxLength ?? 200;

/** hostname-pid-random: unique per process, readable in runner_health, valid as a runner id. */
export function defaultRunnerId(): string {
  const host =
    os
      .hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '') || 'runner';
  return `${host.slice(0, 150)}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

export interface StartedRunner {
  runner: Runner;
  runnerId: string;
  types: string[];
  /** Session modules that could not be loaded: `file: message`. */
  problems: string[];
  /** Said once at start, for the user (e.g. no Chromium: which types are not served and how to fix it). */
  warnings: string[];
  /** The browser and where it came from (CHROMIUM_PATH, Playwright's cache, the system, the packaged build). */
  chromium: FoundChromium | undefined;
  stop(): Promise<number>;
  force(): Promise<number>;
}

export interface StartRunnerOptions {
  log?: Logger;
  /** POLL_INTERVAL_MS was set explicitly: do not follow scheduler_config.poll_interval_ms. */
  fixedPollInterval?: boolean;
  /** Chromium discovery (default findChromium: CHROMIUM_PATH, Playwright's cache, the system's, the packaged build). */
  findChromium?: (
    explicit?: string,
    opts?: FindChromiumOptions,
  ) => Promise<FoundChromium | undefined> | FoundChromium | undefined;
  /** Progress of the packaged build's first unpack (a few seconds, once per version). */
  onChromiumUnpack?: (p: UnpackProgress) => void;
}

export async function startRunner(cfg: RunnerConfig, opts: StartRunnerOptions = {}): Promise<StartedRunner> {
  const runnerId = cfg.runnerId ?? defaultRunnerId();
  if (!RUNNER_ID_RE.test(runnerId) || runnerId.length > RUNNER_ID_MAX) {
    throw new ConfigError(
      `RUNNER_ID (--runner-id) "${runnerId.slice(0, 60)}${runnerId.length > 60 ? '…' : ''}" is not a valid runner id: up to ${RUNNER_ID_MAX} letters, digits and . _ : @ -, starting with a letter or digit`,
    );
  }
  const baseLog = opts.log ?? createLogger(cfg.logLevel, { component: 'runner' });
  const log = baseLog.child({ runnerId });

  const policy = parseTargetPolicy({
    allowedTargets: cfg.allowedTargets,
    allowPrivateTargets: cfg.allowPrivateTargets,
  });
  const checkUrl = createTargetCheck(policy);
  const loaded = await loadSessionTypes(cfg.sessionsDir);
  const problems = loaded.problems.map((p) => `${p.file}: ${p.message}`);
  for (const p of loaded.problems) log.error({ file: p.file, err: p.message }, 'session module not loaded');

  const found = await (opts.findChromium ?? findChromium)(cfg.chromiumPath, {
    onUnpackProgress: opts.onChromiumUnpack,
  });
  const chromium = found?.path;
  if (cfg.chromiumPath !== undefined && chromium === undefined) {
    throw new ConfigError(
      `CHROMIUM_PATH=${cfg.chromiumPath} is not an executable file: set it to a Chromium or Chrome executable, or unset it to search the usual places`,
    );
  }
  if (found)
    log.info(
      { chromium: found.path, chromiumSource: found.source, chromiumVersion: found.version },
      `browser: ${describeChromium(found)}`,
    );

  const warnings: string[] = [];
  const all = [...loaded.types.values()];
  const served: ServedType[] = all
    .filter((t) => !t.browser || chromium !== undefined)
    .map((t) => ({
      name: t.name,
      browser: t.browser,
      inputJsonSchema: t.inputJsonSchema,
      ...(t.timeoutMs === undefined ? {} : { timeoutMs: t.timeoutMs }),
      ...(t.maxAttempts === undefined ? {} : { maxAttempts: t.maxAttempts }),
    }));
  // Remote Playwright clients (GET /v1/browser) are sessions of their own type, served wherever Chromium is.
  if (chromium !== undefined && !loaded.types.has(REMOTE_BROWSER_TYPE))
    served.push({ name: REMOTE_BROWSER_TYPE, browser: true });
  const skipped = all.filter((t) => t.browser && chromium === undefined).map((t) => t.name);
  if (served.length === 0) throw new ConfigError(`no session type can run here. ${chromiumHelp()}`);
  if (skipped.length > 0) {
    const message = `browser session types not served (${skipped.join(', ')}). ${chromiumHelp()}`;
    warnings.push(message);
    log.warn({ skippedTypes: skipped }, message);
  }

  let pool: BrowserPool | undefined;
  let egress: EgressProxy | undefined;
  const closeBrowser = async () => {
    await pool?.close().catch(() => undefined);
    await egress?.close().catch(() => undefined);
  };
  if (chromium !== undefined && served.some((t) => t.browser)) {
    // Every connection of the browser goes through the egress proxy, which applies the target policy
    // to the name and to each address it resolves to.
    egress = new EgressProxy({
      rules: {
        checkName: (host, port) => checkHost(policy, host, port),
        checkAddress: (host, port, address) => checkAddress(policy, host, port, address),
      },
      log: log.child({ component: 'egress' }),
    });
    await egress.start();
    // A leak guard: a browser grown past the guide's whole-runner budget is retired and relaunched.
    const memoryBudgetBytes =
      DEFAULT_BASE_BUDGET_BYTES +
      (cfg.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY) * DEFAULT_SESSION_BUDGET_BYTES;
    pool = new BrowserPool({
      executablePath: chromium,
      memoryBudgetBytes,
      log: log.child({ component: 'browser' }),
      egress,
    });
    try {
      await pool.start();
    } catch (err) {
      await closeBrowser();
      throw new ConfigError(
        `Chromium at ${chromium} failed to start: ${(err as Error).message.split('\n')[0]}. ` +
          'Check that it runs on this machine, or set CHROMIUM_PATH (--chromium-path) to another Chromium',
      );
    }
  }

  const client = new SfwClient({
    baseUrl: cfg.apiBaseUrl,
    token: cfg.runnerToken,
    userAgent: `sfw-runner/${VERSION}`,
    retries: 2,
    maxBackoffMs: 2000,
  });
  const remote =
    chromium === undefined
      ? undefined
      : remoteBrowserExecutor({
          apiBaseUrl: cfg.apiBaseUrl,
          runnerToken: cfg.runnerToken,
          runnerId,
          launchServer: () => launchBrowserServer({ executablePath: chromium, egress }),
          liveSource: serverLiveSource,
          ...(egress
            ? {
                routeProxy: routeThrough(egress),
                egressProxy: { server: `http://${EGRESS_PROXY_HOST}:${egress.port}` },
              }
            : {}),
        });
  const capture: CaptureSettings = {
    maxBytes: cfg.maxCaptureBytes,
    maxDownloads: cfg.maxDownloads,
    videoRecorder: videoRecorderFor(cfg.ffmpegPath),
  };
  const runner = new Runner({
    runnerId,
    client,
    liveView: { apiBaseUrl: cfg.apiBaseUrl, runnerToken: cfg.runnerToken },
    types: served,
    pool,
    log: baseLog,
    maxConcurrency: cfg.maxConcurrency,
    pollIntervalMs: opts.fixedPollInterval ? cfg.pollIntervalMs : undefined,
    heartbeatIntervalMs: cfg.heartbeatIntervalMs,
    shutdownTimeoutMs: cfg.shutdownTimeoutMs,
    version: VERSION,
    executor: (session, ctx) => {
      if (remote && session.type === REMOTE_BROWSER_TYPE && !loaded.types.has(REMOTE_BROWSER_TYPE))
        return remote(session, ctx);
      const type = loaded.types.get(session.type);
      if (!type)
        return Promise.resolve({ status: 'error', errorMessage: `unknown session type ${session.type}` });
      return executeSession({
        session,
        type,
        ...(pool && type.browser ? { pool } : {}),
        signal: ctx.signal,
        abort: (reason) => ctx.abort(reason),
        upload: (name, data, contentType) => ctx.upload(name, data, contentType),
        state: ctx.state,
        log: ctx.log,
        ...(ctx.backoff ? { backoff: ctx.backoff } : {}),
        ...(ctx.live ? { live: ctx.live } : {}),
        capture,
        flow: { allowEvaluate: cfg.allowFlowEvaluate, checkUrl },
      });
    },
  });
  try {
    await runner.start();
  } catch (err) {
    await closeBrowser();
    await client.close();
    throw err;
  }
  let closed: Promise<number> | undefined;
  const finish = (p: Promise<number>) =>
    (closed ??= p.then(async (code) => {
      // The runner has closed the pool: the browser has no connection left to the proxy.
      if (egress && egress.refused > 0)
        log.info(
          { handled: egress.handled, refused: egress.refused },
          'browser connections refused by the target policy',
        );
      await egress?.close().catch(() => undefined);
      await client.close();
      return code;
    }));
  return {
    runner,
    runnerId,
    types: served.map((t) => t.name),
    problems,
    warnings,
    chromium: found,
    stop: () => finish(runner.stop()),
    force: () => {
      const p = runner.force();
      return closed ?? finish(p);
    },
  };
}

/** A remote session's context proxy as a route on the egress proxy (Chromium resolves only its name). */
function routeThrough(egress: EgressProxy) {
  return (upstream: { server: string; username?: string; password?: string }) => {
    const route = egress.addRoute(upstream);
    return {
      proxy: {
        server: `http://${EGRESS_PROXY_HOST}:${route.port}`,
        username: route.username,
        password: route.password,
      },
      close: () => route.close(),
    };
  };
}
