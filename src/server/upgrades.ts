import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { SfwError, type ErrorBody } from '../core/errors.js';
import { RELAY_LEASE_HEADER } from '../protocol/relay.js';
import type { Db } from '../store/db.js';
import { getSession, type SessionRow } from '../store/sessions.js';
import {
  authorize,
  crossSiteReason,
  hostAllowed,
  type AuthConfig,
  type HostPolicy,
  type Scope,
} from './auth.js';

/**
 * The API's WebSocket doors (`GET /v1/browser`, the runners' relay and live sockets): one `upgrade`
 * listener on the HTTP server routes each upgrade by path to the handler that registered it. A handler
 * checks everything before it upgrades; what it throws is answered on the raw socket in the API's error
 * shape, so a WebSocket client sees a plain 4xx answer, never a hang.
 */

export type UpgradeHandler = (
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  url: URL,
  match: RegExpExecArray,
) => Promise<void>;

/** An answer written on the raw socket, in the API's error shape, with no upgrade. */
export function refuseUpgrade(socket: Duplex, err: SfwError): void {
  const body = JSON.stringify({
    error: { code: err.code, message: err.message, ...(err.path ? { path: err.path } : {}) },
  } satisfies ErrorBody);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * The checks every WebSocket door makes before it upgrades: the Host (ALLOWED_HOSTS), the Origin (a page
 * of another site may open a WebSocket anywhere: refused) and the token of the scope, from `token` (a
 * query parameter) or the Authorization header.
 */
export function admitUpgrade(
  policy: { auth: AuthConfig; hosts: HostPolicy },
  req: IncomingMessage,
  token: string | undefined,
  scope: Scope,
): void {
  if (!hostAllowed(policy.hosts, req.headers.host))
    throw new SfwError(
      'HOST_NOT_ALLOWED',
      `this API does not answer for Host ${String(req.headers.host).slice(0, 100)}: add the name to ALLOWED_HOSTS`,
    );
  const reason = crossSiteReason({ method: 'POST', headers: req.headers });
  if (reason !== undefined) throw new SfwError('CROSS_SITE', `cross-site WebSocket refused (${reason})`);
  const authorization = token !== undefined ? `Bearer ${token}` : req.headers.authorization;
  authorize(policy.auth, { headers: { authorization } }, scope);
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A runner's socket for one of its sessions (the relay, the live view): the claim's lease token, in
 * X-Lease-Token, must be the session's current one, held by that runner (409 LEASE_LOST otherwise).
 */
export async function checkRunnerLease(
  db: Db,
  req: IncomingMessage,
  runnerId: string,
  sessionId: string,
): Promise<{ row: SessionRow; lease: string }> {
  const lease = req.headers[RELAY_LEASE_HEADER];
  if (typeof lease !== 'string' || !UUID_RE.test(lease))
    throw new SfwError(
      'VALIDATION',
      `headers.${RELAY_LEASE_HEADER}: is required: the lease token of the claim`,
      {
        path: `headers.${RELAY_LEASE_HEADER}`,
      },
    );
  if (!UUID_RE.test(sessionId))
    throw new SfwError('VALIDATION', 'params.sessionId: must be a session id', { path: 'params.sessionId' });
  const row = await getSession(db, sessionId);
  if (row.status !== 'running' || row.lease_token !== lease || row.claimed_by !== runnerId)
    throw new SfwError('LEASE_LOST', `session ${sessionId}: this lease is not the current one`);
  return { row, lease };
}

export class Upgrades {
  private readonly routes: { re: RegExp; handler: UpgradeHandler }[] = [];
  private server: Server | undefined;

  constructor(private readonly log: FastifyBaseLogger) {}

  /** Routes upgrades whose path matches `re` (anchored) to `handler`. */
  add(re: RegExp, handler: UpgradeHandler): void {
    this.routes.push({ re, handler });
  }

  attach(server: Server): void {
    this.server = server;
    server.on('upgrade', this.onUpgrade);
  }

  detach(): void {
    this.server?.off('upgrade', this.onUpgrade);
    this.server = undefined;
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://api.invalid');
    } catch {
      refuseUpgrade(socket, new SfwError('BAD_REQUEST', 'the URL does not parse'));
      return;
    }
    let work: Promise<void> | undefined;
    for (const r of this.routes) {
      const match = r.re.exec(url.pathname);
      if (match) {
        work = r.handler(req, socket, head, url, match);
        break;
      }
    }
    (
      work ?? Promise.reject(new SfwError('NOT_FOUND', `no WebSocket at ${url.pathname.slice(0, 200)}`))
    ).catch((err: unknown) => {
      if (err instanceof SfwError) refuseUpgrade(socket, err);
      else {
        this.log.error({ err }, 'WebSocket upgrade failed');
        refuseUpgrade(socket, new SfwError('INTERNAL', 'internal error'));
      }
    });
  };
}
