import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, {
  LogController,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  type RouteOptions,
} from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { ERROR_CODES, SfwError, type ErrorBody, type ErrorCode } from '../core/errors.js';
import { isTransientDbError, type Db } from '../store/db.js';
import type { Notifier } from '../store/notify.js';
import {
  admitBrowserRequest,
  authorize,
  hostPolicy,
  type AuthConfig,
  type Caller,
  type HostPolicy,
  type Scope,
} from './auth.js';
import { sessionRoutes } from './routes/sessions.js';
import { batchRoutes } from './routes/batches.js';
import { RUNNER_LIVE_MS, runnerRoutes } from './routes/runners.js';
import { typeRoutes } from './routes/types.js';
import { SessionTypes } from './session-types.js';
import { DEFAULT_RUNNER_RETENTION_MS } from './alerts.js';
import { opsRoutes } from './routes/ops.js';
import { artifactRoutes } from './routes/artifacts.js';
import { LocalArtifactStore, type ArtifactStore } from './artifact-store.js';
import { scheduleRoutes } from './routes/schedules.js';
import { webhookRoutes } from './routes/webhooks.js';
import { limitRoutes } from './routes/limits.js';
import { retentionRoutes } from './routes/retention.js';
import { browserRoutes } from './routes/browser.js';
import { Upgrades } from './upgrades.js';
import { LiveHub } from './live.js';
import { ReplicaDirectory } from './replicas.js';
import { liveRoutes } from './routes/live.js';
import { RelayHub, type RelayLimits } from './relay.js';
import { RELAY_IDLE_TIMEOUT_MS } from '../protocol/relay.js';
import { stateRoutes, type StateOptionsDeps } from './routes/states.js';
import { WebhookSender, type WebhookOptions } from './webhooks.js';
import type { RetentionSettings } from './retention.js';
import { Waiters } from './waiters.js';
import { ClaimHub } from './claims.js';
import { HeartbeatBatcher } from './heartbeats.js';
import { ExchangeQueue } from './exchanges.js';
import { requestLog } from './request-log.js';
import { trackRoutes } from './openapi.js';
import { installRequestMetrics } from './metrics.js';
import type { AlertThresholds } from './alerts.js';
import { registerRateLimit, type RateLimitOptions } from './ratelimit.js';
import { registerBodyLimits } from './limits.js';
import { ArtifactName, RunnerIdSchema } from '../protocol/schemas.js';

export interface AppDeps {
  db: Db;
  /** LISTEN connection; absent in poll-only mode. */
  notifier?: Notifier | undefined;
  auth: AuthConfig;
  /** Host headers answered (ALLOWED_HOSTS); absent: loopback names without tokens, any Host with them. */
  hostPolicy?: HostPolicy | undefined;
  staleSessionTimeoutMs: number;
  maxBodyBytes: number;
  maxArtifactBytes: number;
  artifactsDir: string;
  /** Where artifact bytes live (ARTIFACTS_URL); absent: the local directory artifactsDir. */
  artifactStore?: ArtifactStore | undefined;
  /** Token-bucket limits on client endpoints; absent: no limit. */
  rateLimit?: RateLimitOptions | undefined;
  logger?: FastifyServerOptions['loggerInstance'];
  version: string;
  /** The guide's alert thresholds (default: the guide's values). */
  alertThresholds?: AlertThresholds | undefined;
  /** Stopped runners leave the fleet view after this long. */
  runnerRetentionMs?: number | undefined;
  /**
   * How often waiting claims and waits look at the database while notifications are connected, in case
   * one was lost (default 1,000 ms; without notifications they look every 250 ms).
   */
  fallbackPollMs?: number | undefined;
  /** Webhook settings; with them the app runs a webhook sender while it is up (every replica does). */
  webhooks?: WebhookOptions | undefined;
  /** Named states: STATE_ENCRYPTION_KEY and STATE_TTL_MS (absent: stored in clear, kept until deleted). */
  states?: StateOptionsDeps | undefined;
  /** Where the other API replicas reach this one (API_INTERNAL_URL); absent: sockets meet on one replica. */
  internalUrl?: string | undefined;
  /** Bounds of the remote-browser relay (GET /v1/browser). */
  relay?: RelayLimits | undefined;
  /** RETENTION_MS per final status, for /metrics and GET /v1/retention (the loop runs beside the app). */
  retention?: RetentionSettings | undefined;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    scope?: Scope | 'read';
  }
  interface FastifyRequest {
    caller: Caller;
  }
  interface FastifyInstance {
    deps: AppDeps;
    waiters: Waiters;
    claims: ClaimHub;
    heartbeats: HeartbeatBatcher;
    exchanges: ExchangeQueue;
    sessionTypes: SessionTypes;
    routeList: RouteOptions[];
    webhookSender: WebhookSender | undefined;
    artifactStore: ArtifactStore;
    upgrades: Upgrades;
    live: LiveHub;
    replicas: ReplicaDirectory;
    relayHub: RelayHub;
  }
}

export type App = FastifyInstance & { withTypeProvider(): FastifyInstance };

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const leap = (y: number) => y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
const daysIn = (year: number, month: number) => (month === 2 && leap(year) ? 29 : (DAYS[month - 1] ?? 0));

/**
 * An RFC 3339 date-time that Postgres stores as it reads: years 0001-9999 (Postgres has no year 0) and UTC
 * offsets within ±15:59 (its limit). Checked here so a bad value is named, never passed to SQL.
 */
export function isTimestamp(s: string): boolean {
  const m =
    /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2})(?::?(\d{2}))?)$/.exec(
      s,
    );
  if (!m) return false;
  const [year, month, day, hour, minute, second, tzHour, tzMinute] = m.slice(1).map((v) => Number(v ?? 0));
  return (
    year! >= 1 &&
    month! >= 1 &&
    month! <= 12 &&
    day! >= 1 &&
    day! <= daysIn(year!, month!) &&
    hour! <= 23 &&
    minute! <= 59 &&
    second! <= 59 &&
    tzHour! <= 15 &&
    tzMinute! <= 59
  );
}
const TIMESTAMP_HINT =
  'must be a date-time such as 2026-01-31T12:00:00Z (year 0001-9999, offset within ±15:59)';

// Bodies are strict (no coercion, no silent removal of unknown fields); query strings and params coerce.
function validators() {
  const strict = new Ajv({
    allErrors: false,
    coerceTypes: false,
    removeAdditional: false,
    useDefaults: false,
    strict: false,
  });
  const loose = new Ajv({
    allErrors: false,
    coerceTypes: 'array',
    removeAdditional: false,
    useDefaults: true,
    strict: false,
  });
  for (const ajv of [strict, loose]) {
    addFormats.default(ajv);
    ajv.addFormat('date-time', { type: 'string', validate: isTimestamp });
  }
  return { strict, loose };
}

function validationPath(err: FastifyError): string {
  const first = err.validation?.[0];
  // Named as the routes name them: body, params, headers, query.
  const part = err.validationContext === 'querystring' ? 'query' : (err.validationContext ?? 'body');
  if (!first) return part;
  const segs = first.instancePath.split('/').filter(Boolean);
  const params = first.params as { missingProperty?: string; additionalProperty?: string };
  if (params.missingProperty) segs.push(params.missingProperty);
  if (params.additionalProperty) segs.push(params.additionalProperty);
  return [part, ...segs].join('.');
}

function validationMessage(err: FastifyError): string {
  const first = err.validation?.[0];
  if (!first) return err.message;
  const params = first.params as {
    additionalProperty?: string;
    missingProperty?: string;
    allowedValues?: unknown[];
    format?: string;
  };
  if (params.additionalProperty) return 'is not a known field';
  if (params.missingProperty) return 'is required';
  if (params.format === 'date-time') return TIMESTAMP_HINT;
  if (params.allowedValues) return `must be one of ${params.allowedValues.map(String).join(', ')}`;
  return first.message ?? 'is invalid';
}

export function toErrorBody(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof SfwError) {
    const body: ErrorBody = { error: { code: err.code, message: err.message } };
    if (err.path) body.error.path = err.path;
    return { status: err.status, body };
  }
  const e = err as FastifyError;
  if (e.validation) {
    const path = validationPath(e);
    return {
      status: 400,
      body: { error: { code: 'VALIDATION', message: `${path}: ${validationMessage(e)}`, path } },
    };
  }
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return {
      status: 413,
      body: { error: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is too large' } },
    };
  }
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return {
      status: 415,
      body: {
        error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'unsupported content type: send application/json' },
      },
    };
  }
  if (e.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return {
      status: 414,
      body: {
        error: {
          code: 'URI_TOO_LONG',
          message: `a path segment is longer than ${MAX_PARAM_LENGTH} characters: no id or name is that long`,
        },
      },
    };
  }
  if (e.code === 'FST_ERR_BAD_URL') {
    return {
      status: 400,
      body: {
        error: { code: 'BAD_REQUEST', message: 'the URL path does not decode (bad percent-encoding)' },
      },
    };
  }
  if (
    e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
    e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
    e instanceof SyntaxError
  ) {
    return {
      status: 400,
      body: { error: { code: 'BAD_JSON', message: `malformed JSON body: ${e.message}` } },
    };
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, body: { error: { code: codeFor(e.statusCode), message: e.message } } };
  }
  if (isTransientDbError(err)) {
    return {
      status: 503,
      body: { error: { code: 'UNAVAILABLE', message: 'database unavailable, retry shortly' } },
    };
  }
  // Bad input that slipped past the schemas and reached Postgres is still the client's mistake; the
  // database's own wording stays in the server's log.
  if (isDataError(err)) {
    return {
      status: 400,
      body: {
        error: {
          code: 'VALIDATION',
          message:
            'a value in the request cannot be stored: a number, date or text out of the range its field takes',
        },
      },
    };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } };
}

/** Postgres data exceptions (class 22) and integrity violations (class 23). */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^(22|23)/.test(code);
}

/** The registry's code for an HTTP status Fastify answered with. */
function codeFor(status: number): ErrorCode {
  const codes = Object.entries(ERROR_CODES) as [ErrorCode, { status: number }][];
  return codes.find(([, c]) => c.status === status)?.[0] ?? 'VALIDATION';
}

/**
 * The longest path parameter the router takes: the schemas' longest id or name (runner ids, artifact names),
 * percent-encoded. Longer is 414; anything up to it reaches the schema, which names the field.
 */
export const MAX_PARAM_LENGTH = 3 * Math.max(RunnerIdSchema.maxLength ?? 200, ArtifactName.maxLength ?? 200);

/** Routes whose bodies are not JSON (artifact uploads, which also need the X-Lease-Token header). */
const RAW_BODY_ROUTES = new Set(['PUT /v1/sessions/:id/artifacts/:name']);
const isRawBody = (req: FastifyRequest) => RAW_BODY_ROUTES.has(`${req.method} ${req.routeOptions.url}`);

/** Sent with every answer, errors included. The dashboard's pages replace the CSP with their own. */
export const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
} as const;

function sendError(reply: FastifyReply, err: unknown): void {
  const { status, body } = toErrorBody(err);
  void reply.headers(SECURITY_HEADERS).status(status).send(body);
}

/** Errors Node's HTTP parser meets before any route runs, in the same error shape. */
function clientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message]: [number, ErrorCode, string] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'REQUEST_TIMEOUT', 'the request took too long to arrive']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'HEADERS_TOO_LARGE', 'the request headers are too large']
        : [400, 'BAD_REQUEST', 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code, message } } satisfies ErrorBody);
  const headers = Object.entries(SECURITY_HEADERS)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${headers}content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

/** Methods of the routes whose pattern matches a path (for 405 and its Allow header). */
function methodsFor(routes: readonly RouteOptions[], path: string): string[] {
  const out = new Set<string>();
  for (const r of routes) {
    const pattern = r.url
      .split('/')
      .map((seg) =>
        seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
      )
      .join('/');
    if (!new RegExp(`^${pattern}$`).test(path)) continue;
    for (const m of Array.isArray(r.method) ? r.method : [r.method]) out.add(String(m).toUpperCase());
  }
  return [...out].sort();
}

/** Builds the API (no listen): routes, auth, validation, errors. Tested through real HTTP or inject(). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    bodyLimit: deps.maxBodyBytes,
    logController: new LogController({ disableRequestLogging: true }),
    // Answered by the onRequest hook below, in the documented error shape.
    return503OnClosing: false,
    forceCloseConnections: true,
    genReqId: () => Math.random().toString(36).slice(2, 10),
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors: (err, _req, reply) => sendError(reply, err),
    clientErrorHandler: clientError,
  }).withTypeProvider<TypeBoxTypeProvider>();

  const { strict, loose } = validators();
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? strict.compile(schema) : loose.compile(schema),
  );

  app.decorate('routeList', trackRoutes(app));
  app.decorate('deps', deps);
  app.decorate('artifactStore', deps.artifactStore ?? new LocalArtifactStore(deps.artifactsDir));
  const waiters = new Waiters(deps.notifier, deps.fallbackPollMs);
  app.decorate('waiters', waiters);
  app.decorate(
    'claims',
    new ClaimHub({
      db: deps.db,
      notifier: deps.notifier,
      leaseMs: deps.staleSessionTimeoutMs,
      pollMs: () => waiters.pollMs,
      log: app.log,
    }),
  );
  app.decorate('exchanges', new ExchangeQueue(deps.db, { log: app.log }));
  app.decorate(
    'sessionTypes',
    new SessionTypes({
      db: deps.db,
      windows: {
        liveMs: RUNNER_LIVE_MS,
        retentionMs: deps.runnerRetentionMs ?? DEFAULT_RUNNER_RETENTION_MS,
      },
      log: app.log,
      notifier: deps.notifier,
    }),
  );
  app.decorate('heartbeats', new HeartbeatBatcher(deps.db, deps.staleSessionTimeoutMs, 50, 1000, app.log));
  const upgrades = new Upgrades(app.log);
  upgrades.attach(app.server);
  app.decorate('upgrades', upgrades);
  app.addHook('onClose', async () => upgrades.detach());
  const replicas = new ReplicaDirectory({
    db: deps.db,
    notifier: deps.notifier,
    log: app.log,
    internalUrl: deps.internalUrl,
  });
  const live = new LiveHub({ db: deps.db, notifier: deps.notifier, log: app.log, replicas });
  app.decorate(
    'relayHub',
    new RelayHub({
      db: deps.db,
      log: app.log,
      idleTimeoutMs: deps.relay?.idleTimeoutMs ?? RELAY_IDLE_TIMEOUT_MS,
      replicas,
      notifier: deps.notifier,
    }),
  );
  app.decorate('replicas', replicas);
  app.decorate('live', live);
  app.addHook('onReady', async () => {
    replicas.start();
    live.start();
  });
  app.addHook('preClose', async () => {
    live.close();
    replicas.close();
  });
  app.decorateRequest('caller', 'anonymous');
  installRequestMetrics(app);

  const hosts =
    deps.hostPolicy ??
    hostPolicy(undefined, deps.auth.apiToken !== undefined || deps.auth.runnerToken !== undefined);
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (req, reply) => {
    void reply.headers(SECURITY_HEADERS);
    if (closing) throw new SfwError('UNAVAILABLE', 'the API is shutting down: retry shortly');
    admitBrowserRequest(req, hosts, req.routeOptions.url !== undefined && !isRawBody(req));
    const scope = req.routeOptions.config.scope ?? 'public';
    if (scope === 'read') {
      try {
        req.caller = authorize(deps.auth, req, 'client');
      } catch (err) {
        if (!(err instanceof SfwError) || err.code !== 'FORBIDDEN') throw err;
        req.caller = 'runner';
      }
    } else {
      req.caller = authorize(deps.auth, req, scope);
    }
  });
  registerRateLimit(app, deps.rateLimit);
  registerBodyLimits(app, isRawBody);

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toErrorBody(err);
    if (status >= 500) requestLog(req).error({ err }, 'request failed');
    else
      requestLog(req).debug(
        { status, code: body.error.code, ...(isDataError(err) ? { detail: (err as Error).message } : {}) },
        `request refused: ${body.error.message}`,
      );
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '/';
    const allowed = methodsFor(app.routeList, path);
    if (allowed.length > 0) {
      void reply
        .status(405)
        .header('allow', allowed.join(', '))
        .send({
          error: {
            code: 'METHOD_NOT_ALLOWED',
            message: `${req.method} is not allowed on ${path.slice(0, 200)}: use ${allowed.join(', ')}`,
          },
        });
      return;
    }
    void reply
      .status(404)
      .send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${path.slice(0, 200)}` } });
  });

  await app.register(sessionRoutes);
  await app.register(runnerRoutes);
  await app.register(typeRoutes);
  await app.register(artifactRoutes);
  await app.register(scheduleRoutes);
  await app.register(opsRoutes);
  await app.register(webhookRoutes);
  await app.register(limitRoutes);
  await app.register(retentionRoutes);
  await app.register(batchRoutes);
  await app.register(stateRoutes);
  await app.register(browserRoutes);
  await app.register(liveRoutes);
  const sender = deps.webhooks
    ? new WebhookSender(deps.db, deps.webhooks, deps.notifier, app.log)
    : undefined;
  app.decorate('webhookSender', sender);
  if (sender) {
    app.addHook('onReady', async () => sender.start());
    app.addHook('onClose', async () => sender.stop());
  }
  app.addHook('onClose', async () => {
    app.waiters.close();
    await app.claims.close();
    await app.heartbeats.close();
  });
  return app;
}
