import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';
import { isLoopbackAddress } from '../core/config.js';
import { ConfigError, SfwError } from '../core/errors.js';

/** Two scopes: the API token (clients) and the runner token (runners). Compared in constant time. */
export type Scope = 'client' | 'runner' | 'public' | 'ops';

export interface AuthConfig {
  apiToken?: string | undefined;
  runnerToken?: string | undefined;
  /** Require the API token for /metrics and /openapi.json (when bound beyond loopback). */
  protectOps: boolean;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function same(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

function bearer(req: Pick<FastifyRequest, 'headers'>): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(h.trim());
  return m?.[1];
}

export type Caller = 'client' | 'runner' | 'anonymous';

/** Throws 401/403 unless the request may use an endpoint of this scope; answers who called. */
export function authorize(cfg: AuthConfig, req: Pick<FastifyRequest, 'headers'>, scope: Scope): Caller {
  const enabled = cfg.apiToken !== undefined || cfg.runnerToken !== undefined;
  if (scope === 'public' || !enabled) return 'anonymous';
  if (scope === 'ops' && !cfg.protectOps) return 'anonymous';
  const token = bearer(req);
  if (token === undefined)
    throw new SfwError('UNAUTHORIZED', 'missing token: send Authorization: Bearer <token>');
  const isClient = cfg.apiToken !== undefined && same(token, cfg.apiToken);
  const isRunner = cfg.runnerToken !== undefined && same(token, cfg.runnerToken);
  if (!isClient && !isRunner) throw new SfwError('UNAUTHORIZED', 'invalid token');
  const caller: Caller = isClient ? 'client' : 'runner';
  const wanted = scope === 'ops' ? 'client' : scope;
  if (caller !== wanted) {
    throw new SfwError(
      'FORBIDDEN',
      `this endpoint needs the ${wanted === 'client' ? 'API' : 'runner'} token`,
    );
  }
  return caller;
}

// ---- browsers ------------------------------------------------------------------------------------
// Without tokens (the loopback quick start) any web page the user opens can reach the API through their
// browser. Two doors are closed here: a foreign name pointed at 127.0.0.1 (DNS rebinding) is refused by the
// Host check, and forms or no-preflight fetches from other sites (CSRF) by the cross-site check.

/** Which Host headers the API answers. */
export type HostPolicy =
  { any: true } | { any: false; names: ReadonlySet<string>; suffixes: readonly string[] };

/** The host of a Host header or an ALLOWED_HOSTS entry, canonical (lowercase, no port, no trailing dot). */
function hostPart(value: string): string | undefined {
  const v = value.trim();
  if (!/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::\d{1,5})?$/.test(v)) return undefined;
  try {
    return new URL(`http://${v}`).hostname.replace(/\.$/, '');
  } catch {
    return undefined;
  }
}

/**
 * ALLOWED_HOSTS: names, `*.example.com` (any name under it), IPv4 or IPv6 addresses, or `*` for any Host.
 * Unset: loopback names only when the API runs without tokens; any Host when tokens guard it.
 */
export function hostPolicy(allowedHosts: string | undefined, tokens: boolean): HostPolicy {
  if (allowedHosts === undefined)
    return tokens ? { any: true } : { any: false, names: new Set(), suffixes: [] };
  const names = new Set<string>();
  const suffixes: string[] = [];
  for (const raw of allowedHosts.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    if (entry === '*') return { any: true };
    const glob = entry.startsWith('*.');
    const body = glob ? entry.slice(2) : entry;
    const v6 = body.replace(/^\[(.*)\]$/, '$1');
    const isV6 = isIP(v6) === 6;
    // A port is no part of the match: a name is answered on whatever port the API listens.
    const host = !isV6 && body.includes(':') ? undefined : hostPart(isV6 ? `[${v6}]` : body);
    if (host === undefined || (glob && (isV6 || isIP(host) !== 0))) {
      throw new ConfigError(
        `ALLOWED_HOSTS entry "${entry}" is not a host name, *.domain, IP address or *: list them without ports, comma-separated`,
      );
    }
    if (glob) suffixes.push(`.${host}`);
    else names.add(host);
  }
  return { any: false, names, suffixes };
}

/** Loopback names are always answered: localhost, *.localhost (RFC 6761), 127.0.0.0/8 and [::1]. */
export function hostAllowed(policy: HostPolicy, header: string | undefined): boolean {
  // No Host at all (HTTP/1.0) is no browser: browsers always send one.
  if (policy.any || header === undefined) return true;
  const host = hostPart(header);
  if (host === undefined) return false;
  if (host === 'localhost' || host.endsWith('.localhost') || isLoopbackAddress(host)) return true;
  return policy.names.has(host) || policy.suffixes.some((s) => host.endsWith(s));
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A state-changing request from another site's page, or undefined when it is not one. Browsers say where a
 * request comes from in Sec-Fetch-Site (a header no page can set), else in Origin; the SDK, the CLI, runners
 * and curl send neither. The same rule as Go's net/http CrossOriginProtection: Sec-Fetch-Site decides when
 * present (so a proxy that rewrites Host does not break the dashboard); Origin must match Host otherwise.
 */
export function crossSiteReason(req: Pick<FastifyRequest, 'method' | 'headers'>): string | undefined {
  if (SAFE_METHODS.has(req.method)) return undefined;
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string') {
    return site === 'same-origin' || site === 'none' ? undefined : `Sec-Fetch-Site is ${site}`;
  }
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  let from: string | undefined;
  try {
    from = new URL(origin).host;
  } catch {
    from = undefined;
  }
  const host = req.headers.host;
  const bare = (h: string) => h.toLowerCase().replace(/:(80|443)$/, '');
  if (from && host && bare(from) === bare(host)) return undefined;
  return `Origin ${origin.slice(0, 100)} is not this API`;
}

/** The media type of a request's Content-Type, lowercase, without parameters. */
function mediaType(req: FastifyRequest): string | undefined {
  const ct = req.headers['content-type'];
  return ct === undefined ? undefined : (ct.split(';')[0] ?? '').trim().toLowerCase();
}

const hasBody = (req: FastifyRequest) =>
  req.headers['transfer-encoding'] !== undefined ||
  (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');

/**
 * Refuses what a page of another site or name could send: a foreign Host (421), a cross-site state change
 * (403), and a state change whose body is not JSON (415: forms and no-preflight fetches can send only
 * text/plain, urlencoded or multipart). `jsonRoute` is false for routes that take other types (artifact
 * uploads, which also need X-Lease-Token: a header no page can send cross-site without a CORS preflight,
 * which is never granted) and for paths no route serves (they answer 404 or 405).
 */
export function admitBrowserRequest(req: FastifyRequest, policy: HostPolicy, jsonRoute: boolean): void {
  if (!hostAllowed(policy, req.headers.host)) {
    throw new SfwError(
      'HOST_NOT_ALLOWED',
      `this API does not answer for Host ${String(req.headers.host).slice(0, 100)}: open it by a loopback address (127.0.0.1, localhost) or add the name to ALLOWED_HOSTS`,
    );
  }
  const reason = crossSiteReason(req);
  if (reason !== undefined) {
    throw new SfwError(
      'CROSS_SITE',
      `cross-site request refused (${reason}): state changes come from this API's own dashboard or from clients that are not browsers (SDK, CLI, curl)`,
    );
  }
  if (SAFE_METHODS.has(req.method) || !jsonRoute) return;
  const type = mediaType(req);
  if (type === undefined ? hasBody(req) : type !== 'application/json') {
    throw new SfwError(
      'UNSUPPORTED_MEDIA_TYPE',
      `unsupported content type${type === undefined ? '' : ` ${type.slice(0, 100)}`}: send the body as Content-Type: application/json (or send no body)`,
    );
  }
}
