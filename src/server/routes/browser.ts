import { createRequire } from 'node:module';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { WebSocketServer } from 'ws';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import type { TSchema } from '@sinclair/typebox';
import { SfwError, ValidationError, type ErrorCode } from '../../core/errors.js';
import { SESSION_TIMEOUT_MS_RANGE } from '../../core/types.js';
import {
  RELAY_LEASE_HEADER,
  RELAY_MAX_MESSAGE_BYTES,
  REMOTE_BROWSER_TYPE,
  relayPath,
  webSocketUrl,
} from '../../protocol/relay.js';
import {
  BrowserOptionsSchema,
  StateOptionsSchema,
  type BrowserOptions,
  type StateOptions,
} from '../../protocol/schemas.js';
import { insertSessions } from '../../store/sessions.js';
import { hostPolicy } from '../auth.js';
import { FORWARDED_HEADER, forwardUpgrade } from '../forward.js';
import { admitUpgrade, checkRunnerLease } from '../upgrades.js';
import { firstProblem } from '../session-types.js';
import { checkBrowserOptions, checkStateOptions } from './sessions.js';

/**
 * `GET /v1/browser`: a remote Playwright client (`chromium.connect(ws://…/v1/browser?token=…)`) becomes a
 * session of type `browser`, queued like any other; the runner that claims it dials
 * `GET /v1/runners/:runnerId/sessions/:sessionId/relay` and the hub passes messages between the two.
 * Every check (token, Host and Origin, Playwright version, query) answers before any upgrade.
 */

/** A remote browser session without its own timeoutMs may stay connected this long. */
export const DEFAULT_REMOTE_TIMEOUT_MS = 300_000;

const PLAYWRIGHT_VERSION = (
  createRequire(import.meta.url)('playwright-core/package.json') as { version: string }
).version;
const PLAYWRIGHT_MINOR = PLAYWRIGHT_VERSION.split('.').slice(0, 2).join('.');

const RELAY_RE = /^\/v1\/runners\/([^/]+)\/sessions\/([^/]+)\/relay$/;

const fail = (code: ErrorCode, message: string, path?: string) =>
  new SfwError(code, path ? `${path}: ${message}` : message, path ? { path } : undefined);

function intParam(q: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const raw = q.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw) || n < min || n > max)
    throw fail('VALIDATION', `must be an integer from ${min} to ${max}`, `query.${name}`);
  return n;
}

// The schemas POST /v1/sessions takes `browser` and `state` by, compiled as the API compiles bodies (strict:
// no coercion, no defaults), then the same checks of what a schema cannot say (checkBrowserOptions, …).
const ajv = new Ajv({
  allErrors: false,
  coerceTypes: false,
  removeAdditional: false,
  useDefaults: false,
  strict: false,
});
addFormats.default(ajv);
const validateBrowser = ajv.compile(BrowserOptionsSchema as TSchema);
const validateState = ajv.compile(StateOptionsSchema as TSchema);

function jsonParam(q: URLSearchParams, name: string): unknown {
  const raw = q.get(name);
  if (raw === null) return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    throw new ValidationError(
      `query.${name}`,
      'must be a JSON object (URL-encoded), as the field of POST /v1/sessions',
    );
  }
}

/**
 * `?browser={…}` and `?state={…}`: the session's browser and state options, each exactly the field of
 * POST /v1/sessions. `state.save` is refused: the contexts of a remote session are its client's own, so
 * there is no one context whose state is the session's (a client saves with context.storageState()).
 */
export function remoteSessionOptions(q: URLSearchParams): { browser?: BrowserOptions; state?: StateOptions } {
  const out: { browser?: BrowserOptions; state?: StateOptions } = {};
  const browser = jsonParam(q, 'browser');
  if (browser !== undefined) {
    if (!validateBrowser(browser)) throw firstProblem({ validate: validateBrowser }, 'query.browser');
    checkBrowserOptions(browser as BrowserOptions, 'query.browser');
    out.browser = browser as BrowserOptions;
  }
  const state = jsonParam(q, 'state');
  if (state !== undefined) {
    if (!validateState(state)) throw firstProblem({ validate: validateState }, 'query.state');
    const s = state as StateOptions;
    if (s.save !== undefined)
      throw new ValidationError(
        'query.state.save',
        "a remote browser session does not save a named state: its contexts are the client's own; save one with context.storageState() or a flow session with state.save, and start from it here with state.use",
      );
    checkStateOptions(s, 'query.state');
    out.state = s;
  }
  return out;
}

/** The Playwright client's version from its User-Agent (`Playwright/1.65.1 (…)`), refused unless major.minor match. */
export function checkPlaywrightClient(userAgent: string | undefined): void {
  const m = /^Playwright\/(\d+\.\d+)\.\d+/.exec(userAgent ?? '');
  if (!m || m[1] === PLAYWRIGHT_MINOR) return;
  throw fail(
    'VALIDATION',
    `Playwright ${m[1]} cannot drive this fleet's browsers: the runners use playwright-core ${PLAYWRIGHT_VERSION}; connect with playwright or playwright-core ${PLAYWRIGHT_MINOR}.x`,
    'headers.user-agent',
  );
}

export async function browserRoutes(fastify: FastifyInstance): Promise<void> {
  const { deps } = fastify;
  const limits = deps.relay ?? {};
  const hub = fastify.relayHub;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxMessageBytes ?? RELAY_MAX_MESSAGE_BYTES,
    perMessageDeflate: false,
  });
  const tokens = deps.auth.apiToken !== undefined || deps.auth.runnerToken !== undefined;
  const hosts = deps.hostPolicy ?? hostPolicy(undefined, tokens);
  let closing = false;

  const admit = (req: IncomingMessage, token: string | undefined, scope: 'client' | 'runner') => {
    if (closing) throw new SfwError('UNAVAILABLE', 'the API is shutting down: retry shortly');
    admitUpgrade({ auth: deps.auth, hosts }, req, token, scope);
  };

  const onClient = async (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL) => {
    admit(req, url.searchParams.get('token') ?? undefined, 'client');
    checkPlaywrightClient(req.headers['user-agent']);
    const priority = intParam(url.searchParams, 'priority', -1000, 1000);
    const timeoutMs =
      intParam(url.searchParams, 'timeoutMs', SESSION_TIMEOUT_MS_RANGE.min, SESSION_TIMEOUT_MS_RANGE.max) ??
      DEFAULT_REMOTE_TIMEOUT_MS;
    const options = remoteSessionOptions(url.searchParams);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const pending = hub.addClient(ws);
      insertSessions(deps.db, [
        {
          type: REMOTE_BROWSER_TYPE,
          input: {},
          timeoutMs,
          maxAttempts: 1,
          ...options,
          ...(priority === undefined ? {} : { priority }),
        },
      ]).then(
        ([out]) => hub.bind(pending, out!.row.id),
        (err: unknown) => {
          fastify.log.error({ err }, 'could not enqueue a remote browser session');
          ws.close(1011, 'could not enqueue the session: retry shortly');
        },
      );
    });
  };

  const onRunner = async (
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    runnerId: string,
    sessionId: string,
  ) => {
    admit(req, undefined, 'runner');
    const { row, lease } = await checkRunnerLease(deps.db, req, runnerId, sessionId);
    if (row.type !== REMOTE_BROWSER_TYPE)
      throw fail('VALIDATION', `session ${sessionId} is a ${row.type} session, not ${REMOTE_BROWSER_TYPE}`);
    if (hub.has(sessionId)) {
      wss.handleUpgrade(req, socket, head, (ws) => hub.attachRunner(sessionId, lease, ws));
      return;
    }
    // The client waits on another replica (API_INTERNAL_URL): pass the runner's socket on to it, once.
    const holder =
      typeof req.headers[FORWARDED_HEADER] === 'string'
        ? undefined
        : fastify.replicas.reachable('relay', sessionId)[0];
    if (!holder)
      throw new SfwError(
        'NOT_FOUND',
        fastify.replicas.elsewhere('relay', sessionId).length > 0
          ? 'the client is on another API replica, which set no API_INTERNAL_URL'
          : `no client waits for session ${sessionId}: it left, or is on another API replica`,
      );
    const authorization = req.headers.authorization;
    await forwardUpgrade({
      req,
      socket,
      head,
      wss,
      target: webSocketUrl(holder.url, relayPath(runnerId, sessionId)),
      // The Host this replica accepted (ALLOWED_HOSTS need not name replicas' own addresses).
      headers: {
        ...(req.headers.host ? { host: req.headers.host } : {}),
        ...(authorization ? { authorization } : {}),
        [RELAY_LEASE_HEADER]: lease,
        [FORWARDED_HEADER]: fastify.replicas.replicaId,
      },
      maxPayload: limits.maxMessageBytes ?? RELAY_MAX_MESSAGE_BYTES,
    });
  };

  fastify.upgrades.add(/^\/v1\/browser$/, (req, socket, head, url) => onClient(req, socket, head, url));
  fastify.upgrades.add(RELAY_RE, (req, socket, head, _url, m) =>
    onRunner(req, socket, head, decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)),
  );
  fastify.addHook('preClose', async () => {
    closing = true;
    hub.close();
  });
  fastify.addHook('onClose', async () => wss.close());

  // The same paths without an upgrade: say what they take.
  const needsUpgrade = async () => {
    throw new SfwError(
      'BAD_REQUEST',
      "this endpoint takes a WebSocket: chromium.connect('ws://HOST:PORT/v1/browser?token=…') from playwright-core (docs/remote.md)",
    );
  };
  fastify.get('/v1/browser', { config: { scope: 'client' } }, needsUpgrade);
  fastify.get(
    '/v1/runners/:runnerId/sessions/:sessionId/relay',
    { config: { scope: 'runner' } },
    needsUpgrade,
  );
}
