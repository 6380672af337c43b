import Fastify, {
  LogController,
  type FastifyError,
  type FastifyInstance,
  type FastifyServerOptions,
  type RouteOptions,
} from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { SfwError, type ErrorBody } from '../core/errors.js';
import { isTransientDbError, type Db } from '../store/db.js';
import type { Notifier } from '../store/notify.js';
import { authorize, type AuthConfig, type Caller, type Scope } from './auth.js';
import { sessionRoutes } from './routes/sessions.js';
import { runnerRoutes } from './routes/runners.js';
import { opsRoutes } from './routes/ops.js';
import { artifactRoutes } from './routes/artifacts.js';
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

export interface AppDeps {
  db: Db;
  /** LISTEN connection; absent in poll-only mode. */
  notifier?: Notifier | undefined;
  auth: AuthConfig;
  staleSessionTimeoutMs: number;
  maxBodyBytes: number;
  maxArtifactBytes: number;
  artifactsDir: string;
  /** Token-bucket limits on client endpoints; absent: no limit. */
  rateLimit?: RateLimitOptions | undefined;
  logger?: FastifyServerOptions['loggerInstance'];
  version: string;
  /** The guide's alert thresholds (default: the guide's values). */
  alertThresholds?: AlertThresholds | undefined;
  /** Stopped runners leave the fleet view after this long. */
  runnerRetentionMs?: number | undefined;
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
    routeList: RouteOptions[];
  }
}

export type App = FastifyInstance & { withTypeProvider(): FastifyInstance };

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
  addFormats.default(strict);
  addFormats.default(loose);
  return { strict, loose };
}

function validationPath(err: FastifyError): string {
  const first = err.validation?.[0];
  const part = err.validationContext ?? 'body';
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
  };
  if (params.additionalProperty) return 'is not a known field';
  if (params.missingProperty) return 'is required';
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
      body: { error: { code: 'VALIDATION', message: 'unsupported content type: send application/json' } },
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
    return { status: e.statusCode, body: { error: { code: 'VALIDATION', message: e.message } } };
  }
  if (isTransientDbError(err)) {
    return {
      status: 503,
      body: { error: { code: 'UNAVAILABLE', message: 'database unavailable, retry shortly' } },
    };
  }
  // Bad input that slipped past the schemas and reached Postgres is still the client's mistake.
  const pgCode = (err as { code?: string }).code ?? '';
  if (/^(22|23)/.test(pgCode)) {
    return {
      status: 400,
      body: { error: { code: 'VALIDATION', message: `invalid value: ${(err as Error).message}` } },
    };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } };
}

/** Builds the API (no listen): routes, auth, validation, errors. Tested through real HTTP or inject(). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    bodyLimit: deps.maxBodyBytes,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: true,
    genReqId: () => Math.random().toString(36).slice(2, 10),
  }).withTypeProvider<TypeBoxTypeProvider>();

  const { strict, loose } = validators();
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? strict.compile(schema) : loose.compile(schema),
  );

  app.decorate('routeList', trackRoutes(app));
  app.decorate('deps', deps);
  const waiters = new Waiters(deps.notifier);
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
  app.decorate('heartbeats', new HeartbeatBatcher(deps.db, deps.staleSessionTimeoutMs, 50, 1000, app.log));
  app.decorateRequest('caller', 'anonymous');
  installRequestMetrics(app);

  app.addHook('onRequest', async (req) => {
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
  registerBodyLimits(app);

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toErrorBody(err);
    if (status >= 500) requestLog(req).error({ err }, 'request failed');
    else requestLog(req).debug({ status, code: body.error.code }, `request refused: ${body.error.message}`);
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .status(404)
      .send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });

  await app.register(sessionRoutes);
  await app.register(runnerRoutes);
  await app.register(artifactRoutes);
  await app.register(opsRoutes);
  app.addHook('onClose', async () => {
    app.waiters.close();
    await app.claims.close();
    await app.heartbeats.close();
  });
  return app;
}
