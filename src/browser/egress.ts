import { randomBytes, timingSafeEqual } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns/promises';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { BlockList, connect, isIP, type AddressInfo, type LookupFunction, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { logFn, type LogFn, type LogSink } from './log.js';

/**
 * The browser's only way out. Chromium sends every connection through this proxy (see egressArgs):
 * https and wss arrive as CONNECT host:port, http as absolute-URI requests. For each, the proxy checks
 * the name, resolves it once, checks every address of the answer, and connects to exactly those
 * addresses, so a second lookup cannot send the browser elsewhere (DNS rebinding). A refusal is a 403
 * that names the reason; the reason is also kept for a minute so a page's error can say it.
 *
 * A context with a proxy of its own (a session's `browser.proxy`) talks to the proxy's second port with
 * credentials of its own (`addRoute`): there every request must authenticate (407 until it does), is
 * checked by the same rules, and then goes through that upstream proxy instead of straight out.
 */

export type EgressVerdict = { ok: true } | { ok: false; reason: string };

/** What may be reached. Host names arrive lower-case, without brackets or a trailing dot. */
export interface EgressRules {
  /** Before any lookup: may `host:port` be asked for at all? */
  checkName(host: string, port: number): EgressVerdict;
  /** After the lookup: may `host:port` be reached at `address`? Every address of the answer must pass. */
  checkAddress(host: string, port: number, address: string): EgressVerdict;
}

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** All addresses of a host name (default: the system resolver, `dns.lookup` with `all`). */
export type LookupAll = (host: string) => Promise<ResolvedAddress[]>;

export interface EgressProxyOptions {
  rules: EgressRules;
  lookup?: LookupAll;
  log?: LogSink;
}

/** An upstream proxy a context's connections are chained to: `http://host:port` or `https://host:port`. */
export interface UpstreamProxy {
  server: string;
  username?: string | undefined;
  password?: string | undefined;
}

/** A context's way to the upstream: the credentials it gives on the egress proxy's chain port. */
export interface EgressRoute {
  id: string;
  /** The port (on the egress proxy's host) where routed contexts connect. */
  port: number;
  username: string;
  password: string;
  /** Forgets the route: its credentials are refused from now on. */
  close(): void;
}

/** Why the proxy did not connect to `host:port`: refused by the rules, or not reachable. */
export interface EgressFailure {
  refused: boolean;
  reason: string;
}

/** Response header with the reason of a refusal. */
export const EGRESS_REFUSED_HEADER = 'x-sfw-egress-refused';
/** Response header with the reason the target could not be reached. */
export const EGRESS_ERROR_HEADER = 'x-sfw-egress-error';

const RECENT_MS = 60_000;
/** How long an upstream proxy gets to connect and answer a CONNECT. */
const UPSTREAM_TIMEOUT_MS = 30_000;
const UPSTREAM_HEAD_MAX = 16 * 1024;
const CHALLENGE = 'Basic realm="sfw-egress"';
const RECENT_MAX = 256;
const LOG_EVERY_MS = 10_000;
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

const systemLookup: LookupAll = (host) => dnsLookup(host, { all: true, order: 'verbatim' });

/** Addresses that reach this machine: the proxy's own port there would loop back into it. */
const LOCAL = new BlockList();
LOCAL.addSubnet('127.0.0.0', 8, 'ipv4');
LOCAL.addAddress('0.0.0.0', 'ipv4');
LOCAL.addAddress('::1', 'ipv6');
LOCAL.addAddress('::', 'ipv6');

interface Route {
  id: string;
  token: Buffer;
  protocol: 'http:' | 'https:';
  host: string;
  port: number;
  /** `scheme://host:port`, as errors name the proxy (never its credentials). */
  name: string;
  /** The Proxy-Authorization header for the upstream, if it has credentials. */
  authorization: string | undefined;
}

class Failure extends Error {
  constructor(
    readonly refused: boolean,
    reason: string,
  ) {
    super(reason);
  }
}

export class EgressProxy {
  private readonly rules: EgressRules;
  private readonly lookup: LookupAll;
  private readonly log: LogFn;
  private readonly server: Server;
  private readonly chainServer: Server;
  private readonly sockets = new Set<Duplex>();
  private readonly agent = new Agent({ keepAlive: true });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true });
  private readonly routes = new Map<string, Route>();
  private readonly recent = new Map<string, EgressFailure & { at: number }>();
  private readonly lastLogged = new Map<string, number>();
  private listenPort = 0;
  private chainListenPort = 0;
  private counts = { handled: 0, refused: 0 };

  constructor(opts: EgressProxyOptions) {
    this.rules = opts.rules;
    this.lookup = opts.lookup ?? systemLookup;
    this.log = logFn(opts.log);
    this.server = this.listener(false);
    this.chainServer = this.listener(true);
  }

  /** A server for direct contexts, or (`chained`) for contexts with a route to an upstream proxy. */
  private listener(chained: boolean): Server {
    const server = createServer({ keepAliveTimeout: 5000 });
    server.on('connection', (s: Socket) => this.track(s));
    server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.tunnel(req, socket, head, chained);
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      void this.forward(req, res, chained);
    });
    return server;
  }

  async start(): Promise<void> {
    const listen = (server: Server) =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      });
    this.listenPort = await listen(this.server);
    this.chainListenPort = await listen(this.chainServer);
  }

  /** The port on 127.0.0.1 (0 before start). */
  get port(): number {
    return this.listenPort;
  }

  /** The port on 127.0.0.1 where contexts with a route connect (0 before start). */
  get chainPort(): number {
    return this.chainListenPort;
  }

  /**
   * A route for one context to `upstream`: its connections, made to `chainPort` with the route's
   * credentials, are checked as any others and then go through that proxy. Throws on a server that is
   * not http(s)://host[:port].
   */
  addRoute(upstream: UpstreamProxy): EgressRoute {
    const u = parseProxyServer(upstream.server);
    if (!u) throw new Error('an upstream proxy must be http://host:port or https://host:port');
    const id = `ctx-${randomBytes(6).toString('hex')}`;
    const password = randomBytes(24).toString('base64url');
    const credentials =
      upstream.username !== undefined || upstream.password !== undefined
        ? `Basic ${Buffer.from(`${upstream.username ?? ''}:${upstream.password ?? ''}`).toString('base64')}`
        : undefined;
    this.routes.set(id, {
      id,
      token: Buffer.from(password),
      ...u,
      name: `${u.protocol}//${hostPort(u.host, u.port)}`,
      authorization: credentials,
    });
    return { id, port: this.chainListenPort, username: id, password, close: () => this.routes.delete(id) };
  }

  /** Routes open now (one per context with a proxy). */
  get routeCount(): number {
    return this.routes.size;
  }

  /** Tunnels and requests asked for. */
  get handled(): number {
    return this.counts.handled;
  }

  /** Of those, refused by the rules. */
  get refused(): number {
    return this.counts.refused;
  }

  /** Why the last connection to `host:port` (by the route `routeId`, if given) failed, in the last minute. */
  recentFailure(host: string, port: number, routeId?: string): EgressFailure | undefined {
    const f = this.recent.get(failureKey(normalizeHost(host), port, routeId));
    return f && Date.now() - f.at < RECENT_MS ? { refused: f.refused, reason: f.reason } : undefined;
  }

  async close(): Promise<void> {
    const closed = [this.server, this.chainServer].map(
      (server) => new Promise<void>((resolve) => server.close(() => resolve())),
    );
    for (const s of this.sockets) s.destroy();
    this.agent.destroy();
    this.httpsAgent.destroy();
    this.routes.clear();
    await Promise.all(closed);
  }

  /**
   * Checks the name, looks it up once, checks every address; throws a Failure. With `unresolved: 'pass'`
   * (a target an upstream proxy connects to, which resolves it itself) a name this machine cannot
   * resolve is checked by name only and answers no address.
   */
  private async resolve(
    host: string,
    port: number,
    unresolved: 'fail' | 'pass' = 'fail',
  ): Promise<ResolvedAddress[]> {
    const name = this.rules.checkName(host, port);
    if (!name.ok) throw new Failure(true, name.reason);
    const literal = isIP(host);
    let addresses: ResolvedAddress[];
    if (literal !== 0) {
      addresses = [{ address: host, family: literal }];
    } else {
      try {
        addresses = await this.lookup(host);
      } catch (err) {
        if (unresolved === 'pass') return [];
        throw new Failure(false, `${host} could not be resolved (${errorCode(err)})`);
      }
      if (addresses.length === 0) {
        if (unresolved === 'pass') return [];
        throw new Failure(false, `${host} could not be resolved (no address)`);
      }
    }
    for (const a of addresses) {
      if ((port === this.listenPort || port === this.chainListenPort) && isLocal(a.address))
        throw new Failure(true, `${host}:${port} is the runner's egress proxy`);
      const verdict = this.rules.checkAddress(host, port, a.address);
      if (!verdict.ok) throw new Failure(true, verdict.reason);
    }
    return addresses;
  }

  /** The upstream proxy's address, checked by the same rules; a refusal names the proxy. */
  private async resolveUpstream(route: Route): Promise<ResolvedAddress[]> {
    try {
      return await this.resolve(route.host, route.port);
    } catch (err) {
      if (!(err instanceof Failure)) throw err;
      throw new Failure(err.refused, `proxy ${route.name}: ${err.message}`);
    }
  }

  /** The route whose credentials `req` carries (Proxy-Authorization: Basic id:token), if any. */
  private authenticate(req: IncomingMessage): Route | undefined {
    const m = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers['proxy-authorization'] ?? '');
    if (!m) return undefined;
    const text = Buffer.from(m[1]!, 'base64').toString();
    const colon = text.indexOf(':');
    const route = colon > 0 ? this.routes.get(text.slice(0, colon)) : undefined;
    const token = Buffer.from(text.slice(colon + 1));
    return route && token.length === route.token.length && timingSafeEqual(token, route.token)
      ? route
      : undefined;
  }

  /** Notes a failure (for recentFailure and the log) and returns the header that tells it. */
  private failed(host: string, port: number, err: unknown, route?: Route): Record<string, string> {
    const failure =
      err instanceof Failure
        ? err
        : route
          ? new Failure(false, `proxy ${route.name} could not be reached (${errorCode(err)})`)
          : new Failure(false, `${hostPort(host, port)} could not be reached (${errorCode(err)})`);
    const key = failureKey(host, port, route?.id);
    const now = Date.now();
    this.recent.delete(key);
    this.recent.set(key, { refused: failure.refused, reason: failure.message, at: now });
    if (this.recent.size > RECENT_MAX) this.recent.delete(this.recent.keys().next().value!);
    if (!failure.refused) return { [EGRESS_ERROR_HEADER]: headerSafe(failure.message) };
    this.counts.refused++;
    if (now - (this.lastLogged.get(key) ?? 0) >= LOG_EVERY_MS) {
      this.lastLogged.delete(key);
      this.lastLogged.set(key, now);
      if (this.lastLogged.size > RECENT_MAX) this.lastLogged.delete(this.lastLogged.keys().next().value!);
      this.log(
        'browser connection refused',
        {
          host,
          port,
          ...(route ? { proxy: route.name } : {}),
          reason: failure.message,
          refused: this.counts.refused,
        },
        'warn',
      );
    }
    return { [EGRESS_REFUSED_HEADER]: headerSafe(failure.message) };
  }

  /** CONNECT host:port: https, wss and ws (Chromium tunnels WebSockets). */
  private async tunnel(req: IncomingMessage, client: Duplex, head: Buffer, chained: boolean): Promise<void> {
    this.counts.handled++;
    this.track(client);
    const route = chained ? this.authenticate(req) : undefined;
    if (chained && !route) {
      client.end(statusHead(407, { 'Proxy-Authenticate': CHALLENGE }));
      return;
    }
    const target = parseAuthority(req.url ?? '');
    if (!target) {
      client.end(statusHead(400, { [EGRESS_ERROR_HEADER]: 'not host:port' }));
      return;
    }
    let upstream: Duplex;
    try {
      upstream = route
        ? await this.connectVia(route, target.host, target.port)
        : await this.connectTo(target.host, target.port, await this.resolve(target.host, target.port));
    } catch (err) {
      const headers = this.failed(target.host, target.port, err, route);
      client.end(statusHead(err instanceof Failure && err.refused ? 403 : 502, headers));
      return;
    }
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  }

  /**
   * GET http://host:port/path: forwarded over kept-alive connections to the checked addresses, or for a
   * route, in absolute form to its upstream proxy.
   */
  private async forward(req: IncomingMessage, res: ServerResponse, chained: boolean): Promise<void> {
    this.counts.handled++;
    const route = chained ? this.authenticate(req) : undefined;
    if (chained && !route) {
      req.resume();
      res.writeHead(407, { 'proxy-authenticate': CHALLENGE, 'content-length': '0' });
      res.end();
      return;
    }
    const target = parseHttpUrl(req.url ?? '');
    if (!target) {
      res.writeHead(400, { [EGRESS_ERROR_HEADER]: 'not an absolute http URL' });
      res.end();
      return;
    }
    const answerFailure = (err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const headers = this.failed(target.host, target.port, err, route);
      res.writeHead(err instanceof Failure && err.refused ? 403 : 502, {
        ...headers,
        'content-type': 'text/plain; charset=utf-8',
      });
      res.end(`${Object.values(headers).join('')}\n`);
    };
    let addresses: ResolvedAddress[];
    try {
      if (route) {
        await this.resolve(target.host, target.port, 'pass');
        addresses = await this.resolveUpstream(route);
      } else {
        addresses = await this.resolve(target.host, target.port);
      }
    } catch (err) {
      req.resume();
      answerFailure(err);
      return;
    }
    const headers = endToEnd(req.rawHeaders, req.headers.connection);
    if (route?.authorization) headers.push('Proxy-Authorization', route.authorization);
    const via = route
      ? {
          host: route.host,
          port: route.port,
          path: `http://${hostPort(target.host, target.port)}${target.path}`,
          ...(route.protocol === 'https:' ? { servername: serverName(route.host) } : {}),
        }
      : { host: target.host, port: target.port, path: target.path };
    const request = route?.protocol === 'https:' ? httpsRequest : httpRequest;
    const send = (retry: boolean) => {
      const upstream = request({
        ...via,
        method: req.method,
        headers,
        setHost: false,
        agent: route?.protocol === 'https:' ? this.httpsAgent : this.agent,
        lookup: pinnedLookup(addresses),
      });
      upstream.on('response', (up) => {
        if (route && up.statusCode === 407) {
          up.resume();
          answerFailure(new Failure(false, refusedCredentials(route)));
          return;
        }
        res.writeHead(up.statusCode ?? 502, up.statusMessage, endToEnd(up.rawHeaders, up.headers.connection));
        up.pipe(res);
        up.on('error', () => res.destroy());
      });
      upstream.on('error', (err) => {
        // A kept-alive connection the server closed meanwhile: an idempotent request goes once more.
        if (retry && upstream.reusedSocket && !res.headersSent && errorCode(err) === 'ECONNRESET')
          send(false);
        else answerFailure(err instanceof Failure || !route ? err : upstreamUnreachable(route, err));
      });
      current = upstream;
      if (req.readableEnded) upstream.end();
      else req.pipe(upstream);
    };
    let current: ReturnType<typeof request> | undefined;
    res.on('close', () => {
      if (!res.writableFinished) current?.destroy();
    });
    send(IDEMPOTENT.has(req.method ?? ''));
  }

  /**
   * A tunnel to `host:port` through the route's upstream proxy: the target checked by the rules (by
   * name, and by address where this machine resolves it), the proxy's own address too, then CONNECT.
   */
  private async connectVia(route: Route, host: string, port: number): Promise<Duplex> {
    await this.resolve(host, port, 'pass');
    const addresses = await this.resolveUpstream(route);
    let socket: Duplex;
    try {
      socket = await this.connectTo(route.host, route.port, addresses, UPSTREAM_TIMEOUT_MS);
    } catch (err) {
      throw upstreamUnreachable(route, err);
    }
    try {
      if (route.protocol === 'https:') socket = await startTls(socket as Socket, route);
      const authority = hostPort(host, port);
      const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
      if (route.authorization) lines.push(`Proxy-Authorization: ${route.authorization}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      const answer = await readHead(socket);
      if (answer.status === 407) throw new Failure(false, refusedCredentials(route));
      if (answer.status < 200 || answer.status > 299)
        throw new Failure(
          false,
          `proxy ${route.name} answered ${answer.status}${answer.text ? ` ${answer.text}` : ''} to CONNECT ${authority}`,
        );
      if (answer.rest.length > 0) socket.unshift(answer.rest);
      return this.track(socket);
    } catch (err) {
      socket.destroy();
      throw err instanceof Failure ? err : upstreamUnreachable(route, err);
    }
  }

  /** A TCP connection to the checked addresses (given up after `timeoutMs`, if set). */
  private connectTo(
    host: string,
    port: number,
    addresses: ResolvedAddress[],
    timeoutMs?: number,
  ): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const s = connect({ host, port, lookup: pinnedLookup(addresses) });
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(
              () => s.destroy(Object.assign(new Error('ETIMEDOUT'), { code: 'ETIMEDOUT' })),
              timeoutMs,
            );
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      s.once('connect', () => {
        clearTimeout(timer);
        s.off('error', onError);
        resolve(this.track(s));
      });
      s.once('error', onError);
    });
  }

  private track<T extends Duplex>(s: T): T {
    if (!this.sockets.has(s)) {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    return s;
  }
}

/** A `lookup` for net.connect that answers with the addresses already checked: no second lookup. */
function pinnedLookup(addresses: ResolvedAddress[]): LookupFunction {
  return (_host, options, cb) => {
    const list =
      options.family === 4 || options.family === 6
        ? addresses.filter((a) => a.family === options.family)
        : addresses;
    const first = list[0];
    if (!first) cb(Object.assign(new Error('no checked address of that family'), { code: 'ENOTFOUND' }), '');
    else if (options.all) cb(null, list);
    else cb(null, first.address, first.family);
  };
}

/** Raw headers without the hop-by-hop ones (and those the Connection header names). */
function endToEnd(raw: string[], connection: string | undefined): string[] {
  const named = new Set((connection ?? '').split(',').map((t) => t.trim().toLowerCase()));
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(lower) && !named.has(lower)) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

function statusHead(status: 400 | 403 | 407 | 502, headers: Record<string, string>): string {
  const text = {
    400: 'Bad Request',
    403: 'Forbidden',
    407: 'Proxy Authentication Required',
    502: 'Bad Gateway',
  }[status];
  const lines = [`HTTP/1.1 ${status} ${text}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return `${lines.join('\r\n')}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;
}

function failureKey(host: string, port: number, routeId: string | undefined): string {
  return routeId ? `${routeId} ${host}:${port}` : `${host}:${port}`;
}

function refusedCredentials(route: Route): string {
  return route.authorization
    ? `proxy ${route.name} refused the credentials (407 Proxy Authentication Required): check browser.proxy.username and password`
    : `proxy ${route.name} asks for credentials (407 Proxy Authentication Required): set browser.proxy.username and password`;
}

function upstreamUnreachable(route: Route, err: unknown): Failure {
  const code = errorCode(err);
  if (/CERT|SELF_SIGNED|ALTNAME|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/.test(code))
    return new Failure(false, `proxy ${route.name}: its TLS certificate was not accepted (${code})`);
  return new Failure(false, `proxy ${route.name} could not be reached (${code})`);
}

/** The TLS server name of a host (none for an IP address, as TLS forbids). */
function serverName(host: string): string | undefined {
  return isIP(host) === 0 ? host : undefined;
}

/** TLS to an https:// upstream proxy over the connected socket, its certificate checked. */
function startTls(socket: Socket, route: Route): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const name = serverName(route.host);
    // host: the name the certificate is checked against (servername alone is not sent for an IP).
    const tls = tlsConnect({ socket, host: route.host, ...(name ? { servername: name } : {}) });
    const timer = setTimeout(() => tls.destroy(new Error('ETIMEDOUT')), UPSTREAM_TIMEOUT_MS);
    tls.once('secureConnect', () => {
      clearTimeout(timer);
      tls.off('error', onError);
      resolve(tls);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    tls.once('error', onError);
  });
}

/** Reads an HTTP response head from `socket`: its status, reason and the bytes after it. */
function readHead(socket: Duplex): Promise<{ status: number; text: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const done = (err: Error | undefined, value?: { status: number; text: string; rest: Buffer }) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(value!);
    };
    const onData = (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) {
        if (data.length > UPSTREAM_HEAD_MAX) done(new Error('EPROTO'));
        return;
      }
      socket.pause();
      const m = /^HTTP\/1\.[01] (\d{3})(?: ([^\r\n]*))?/.exec(data.subarray(0, end).toString('latin1'));
      if (!m) done(new Error('EPROTO'));
      else
        done(undefined, { status: Number(m[1]), text: headerSafe(m[2] ?? ''), rest: data.subarray(end + 4) });
    };
    const onError = (err: Error) => done(err);
    const onClose = () => done(Object.assign(new Error('ECONNRESET'), { code: 'ECONNRESET' }));
    const timer = setTimeout(
      () => done(Object.assign(new Error('ETIMEDOUT'), { code: 'ETIMEDOUT' })),
      UPSTREAM_TIMEOUT_MS,
    );
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

/** `http://host[:port]` or `https://host[:port]`, nothing else (no credentials, path or query). */
export function parseProxyServer(
  server: string,
): { protocol: 'http:' | 'https:'; host: string; port: number } | undefined {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.hostname === '' || u.username !== '' || u.password !== '') return undefined;
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') return undefined;
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  return { protocol: u.protocol, host: normalizeHost(u.hostname), port };
}

function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 500);
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message ?? 'error';
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function normalizeHost(host: string): string {
  const h = host.toLowerCase().replace(/\.$/, '');
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

function isLocal(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return LOCAL.check(mapped, 'ipv4');
  return LOCAL.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** `host:port` of a CONNECT request (`[v6]:port` for IPv6). */
function parseAuthority(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!host || !(port > 0 && port < 65536)) return undefined;
  return { host: normalizeHost(host), port };
}

function parseHttpUrl(text: string): { host: string; port: number; path: string } | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' || u.hostname === '') return undefined;
  return { host: normalizeHost(u.hostname), port: Number(u.port || 80), path: `${u.pathname}${u.search}` };
}

/** `host:port` of an http(s) URL, as the proxy keys its failures. */
export function urlHostPort(url: string): { host: string; port: number } | undefined {
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    return { host: normalizeHost(u.hostname), port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)) };
  } catch {
    return undefined;
  }
}
