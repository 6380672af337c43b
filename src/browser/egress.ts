import { lookup as dnsLookup } from 'node:dns/promises';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { BlockList, connect, isIP, type AddressInfo, type LookupFunction, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { logFn, type LogFn, type LogSink } from './log.js';

/**
 * The browser's only way out. Chromium sends every connection through this proxy (see egressArgs):
 * https and wss arrive as CONNECT host:port, http as absolute-URI requests. For each, the proxy checks
 * the name, resolves it once, checks every address of the answer, and connects to exactly those
 * addresses, so a second lookup cannot send the browser elsewhere (DNS rebinding). A refusal is a 403
 * that names the reason; the reason is also kept for a minute so a page's error can say it.
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
  private readonly sockets = new Set<Duplex>();
  private readonly agent = new Agent({ keepAlive: true });
  private readonly recent = new Map<string, EgressFailure & { at: number }>();
  private readonly lastLogged = new Map<string, number>();
  private listenPort = 0;
  private counts = { handled: 0, refused: 0 };

  constructor(opts: EgressProxyOptions) {
    this.rules = opts.rules;
    this.lookup = opts.lookup ?? systemLookup;
    this.log = logFn(opts.log);
    this.server = createServer({ keepAliveTimeout: 5000 });
    this.server.on('connection', (s: Socket) => this.track(s));
    this.server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.tunnel(req, socket, head);
    });
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      void this.forward(req, res);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listenPort = (this.server.address() as AddressInfo).port;
  }

  /** The port on 127.0.0.1 (0 before start). */
  get port(): number {
    return this.listenPort;
  }

  /** Tunnels and requests asked for. */
  get handled(): number {
    return this.counts.handled;
  }

  /** Of those, refused by the rules. */
  get refused(): number {
    return this.counts.refused;
  }

  /** Why the last connection to `host:port` failed, if that was in the last minute. */
  recentFailure(host: string, port: number): EgressFailure | undefined {
    const f = this.recent.get(`${normalizeHost(host)}:${port}`);
    return f && Date.now() - f.at < RECENT_MS ? { refused: f.refused, reason: f.reason } : undefined;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.agent.destroy();
    await closed;
  }

  /** Checks the name, looks it up once, checks every address; throws a Failure. */
  private async resolve(host: string, port: number): Promise<ResolvedAddress[]> {
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
        throw new Failure(false, `${host} could not be resolved (${errorCode(err)})`);
      }
      if (addresses.length === 0) throw new Failure(false, `${host} could not be resolved (no address)`);
    }
    for (const a of addresses) {
      if (port === this.listenPort && isLocal(a.address))
        throw new Failure(true, `${host}:${port} is the runner's egress proxy`);
      const verdict = this.rules.checkAddress(host, port, a.address);
      if (!verdict.ok) throw new Failure(true, verdict.reason);
    }
    return addresses;
  }

  /** Notes a failure (for recentFailure and the log) and returns the header that tells it. */
  private failed(host: string, port: number, err: unknown): Record<string, string> {
    const failure =
      err instanceof Failure
        ? err
        : new Failure(false, `${hostPort(host, port)} could not be reached (${errorCode(err)})`);
    const key = `${host}:${port}`;
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
        { host, port, reason: failure.message, refused: this.counts.refused },
        'warn',
      );
    }
    return { [EGRESS_REFUSED_HEADER]: headerSafe(failure.message) };
  }

  /** CONNECT host:port: https, wss and ws (Chromium tunnels WebSockets). */
  private async tunnel(req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    this.counts.handled++;
    this.track(client);
    const target = parseAuthority(req.url ?? '');
    if (!target) {
      client.end(statusHead(400, { [EGRESS_ERROR_HEADER]: 'not host:port' }));
      return;
    }
    let upstream: Socket;
    try {
      upstream = await this.connectTo(target.host, target.port, await this.resolve(target.host, target.port));
    } catch (err) {
      const headers = this.failed(target.host, target.port, err);
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

  /** GET http://host:port/path: forwarded over kept-alive connections to the checked addresses. */
  private async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counts.handled++;
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
      const headers = this.failed(target.host, target.port, err);
      res.writeHead(err instanceof Failure && err.refused ? 403 : 502, {
        ...headers,
        'content-type': 'text/plain; charset=utf-8',
      });
      res.end(`${Object.values(headers).join('')}\n`);
    };
    let addresses: ResolvedAddress[];
    try {
      addresses = await this.resolve(target.host, target.port);
    } catch (err) {
      req.resume();
      answerFailure(err);
      return;
    }
    const headers = endToEnd(req.rawHeaders, req.headers.connection);
    const send = (retry: boolean) => {
      const upstream = httpRequest({
        host: target.host,
        port: target.port,
        method: req.method,
        path: target.path,
        headers,
        setHost: false,
        agent: this.agent,
        lookup: pinnedLookup(addresses),
      });
      upstream.on('response', (up) => {
        res.writeHead(up.statusCode ?? 502, up.statusMessage, endToEnd(up.rawHeaders, up.headers.connection));
        up.pipe(res);
        up.on('error', () => res.destroy());
      });
      upstream.on('error', (err) => {
        // A kept-alive connection the server closed meanwhile: an idempotent request goes once more.
        if (retry && upstream.reusedSocket && !res.headersSent && errorCode(err) === 'ECONNRESET')
          send(false);
        else answerFailure(err);
      });
      current = upstream;
      if (req.readableEnded) upstream.end();
      else req.pipe(upstream);
    };
    let current: ReturnType<typeof httpRequest> | undefined;
    res.on('close', () => {
      if (!res.writableFinished) current?.destroy();
    });
    send(IDEMPOTENT.has(req.method ?? ''));
  }

  private connectTo(host: string, port: number, addresses: ResolvedAddress[]): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const s = connect({ host, port, lookup: pinnedLookup(addresses) });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(this.track(s));
      });
      s.once('error', reject);
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

function statusHead(status: 400 | 403 | 502, headers: Record<string, string>): string {
  const text = { 400: 'Bad Request', 403: 'Forbidden', 502: 'Bad Gateway' }[status];
  const lines = [`HTTP/1.1 ${status} ${text}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return `${lines.join('\r\n')}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;
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
