import { ConfigError, SfwError } from '../core/errors.js';

/**
 * What a flow's browser may reach. Pure checks (no DNS, no I/O), applied in two places: by the flow
 * executor before each `goto` (for a clear step error), and by the runner's egress proxy to every
 * connection the browser opens, first to the host name and port (`checkHost`), then to each address the
 * name resolved to (`checkAddress`), whose answer the proxy then connects to. Rules: only http/https;
 * cloud-metadata and link-local addresses refused unless ALLOW_PRIVATE_TARGETS; with ALLOWED_TARGETS set,
 * only the hosts it names (names, `*.globs`, IPs, CIDRs, each with an optional port), and a name that
 * resolves to an internal address (loopback, private, link-local…) only when an IP or CIDR entry names
 * that address too, so a listed name cannot be pointed inside the network (DNS rebinding).
 */

type Ip = { v: 4; n: bigint } | { v: 6; n: bigint };

interface Cidr {
  v: 4 | 6;
  base: bigint;
  bits: number;
}

export type TargetRule =
  | { kind: 'host'; host: string; port?: string }
  | { kind: 'glob'; re: RegExp; port?: string }
  | { kind: 'cidr'; cidr: Cidr; port?: string };

export interface TargetPolicy {
  /** null: any host (still minus the blocked ranges). */
  allowed: TargetRule[] | null;
  allowPrivate: boolean;
}

/** A navigation the policy refuses; the flow step fails with this message. */
export class TargetNotAllowedError extends SfwError {
  override readonly name = 'TargetNotAllowedError';
  constructor(message: string) {
    super('VALIDATION', message);
  }
}

const METADATA_HOSTS = new Set([
  'metadata.google.internal',
  'metadata.goog',
  'metadata',
  'instance-data',
  'instance-data.ec2.internal',
]);

// Link-local (where AWS, GCP, Azure, OpenStack and DigitalOcean serve metadata), AWS's IPv6 metadata
// address, and Alibaba Cloud's metadata address.
const BLOCKED: Cidr[] = ['169.254.0.0/16', 'fe80::/10', 'fd00:ec2::254/128', '100.100.100.200/32'].map(
  (c) => {
    const parsed = parseCidr(c);
    if (!parsed) throw new Error(`bad built-in CIDR ${c}`);
    return parsed;
  },
);

// Addresses inside the machine or its network: with ALLOWED_TARGETS, a name may resolve to these only
// when an IP or CIDR entry names them. IPv4-mapped and NAT64 forms are folded to IPv4 by parseIp.
const INTERNAL: Cidr[] = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/3',
  '::/127',
  'fc00::/7',
  'fe80::/10',
  'fec0::/10',
  'ff00::/8',
].map((c) => {
  const parsed = parseCidr(c);
  if (!parsed) throw new Error(`bad built-in CIDR ${c}`);
  return parsed;
});

function parseIPv4(s: string): bigint | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = (n << 8n) | BigInt(v);
  }
  return n;
}

function parseIPv6(s: string): bigint | null {
  let text = s;
  // An embedded dotted IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const tail = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const v4 = parseIPv4(tail[2] ?? '');
    if (v4 === null) return null;
    text = `${tail[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...rest];
  let n = 0n;
  for (const g of groups) {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return null;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return n;
}

function parseIp(s: string): Ip | null {
  const v4 = parseIPv4(s);
  if (v4 !== null) return { v: 4, n: v4 };
  const v6 = parseIPv6(/^\[.*\]$/.test(s) ? s.slice(1, -1) : s);
  if (v6 === null) return null;
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses reach the IPv4 host.
  const top = v6 >> 32n;
  if (top === 0xffffn || top === 0x64ff9b0000000000000000n) return { v: 4, n: v6 & 0xffffffffn };
  return { v: 6, n: v6 };
}

function parseCidr(s: string): Cidr | null {
  const [addr, bitsText, ...extra] = s.split('/');
  if (extra.length > 0 || addr === undefined || bitsText === undefined || !/^\d{1,3}$/.test(bitsText))
    return null;
  const ip = parseIp(addr);
  if (!ip) return null;
  const width = ip.v === 4 ? 32 : 128;
  const bits = Number(bitsText);
  if (bits > width) return null;
  const shift = BigInt(width - bits);
  return { v: ip.v, base: (ip.n >> shift) << shift, bits };
}

function inCidr(ip: Ip, c: Cidr): boolean {
  if (ip.v !== c.v) return false;
  const shift = BigInt((c.v === 4 ? 32 : 128) - c.bits);
  return ip.n >> shift === c.base >> shift;
}

/** Lower-case, without a trailing dot or the brackets of an IPv6 URL host. */
function normalizeHost(host: string): string {
  const h = host.toLowerCase().replace(/\.$/, '');
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

function parseRule(entry: string): TargetRule | null {
  let text = entry.trim().toLowerCase();
  let port: string | undefined;
  // [v6]:port, [v6], v4:port, name:port — a bare IPv6 address has several colons and no port.
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  if (bracketed) {
    text = bracketed[1] ?? '';
    port = bracketed[2];
  } else if ((text.match(/:/g) ?? []).length === 1) {
    const i = text.indexOf(':');
    port = text.slice(i + 1);
    text = text.slice(0, i);
    if (!/^\d{1,5}$/.test(port)) return null;
  }
  const withPort = (r: TargetRule): TargetRule => (port === undefined ? r : { ...r, port });
  if (text.includes('/')) {
    const cidr = parseCidr(text);
    return cidr ? withPort({ kind: 'cidr', cidr }) : null;
  }
  const ip = parseIp(text);
  if (ip) return withPort({ kind: 'cidr', cidr: { v: ip.v, base: ip.n, bits: ip.v === 4 ? 32 : 128 } });
  if (!/^[a-z0-9*]([a-z0-9*.-]*[a-z0-9*])?\.?$/.test(text)) return null;
  const host = normalizeHost(text);
  if (host.includes('*')) {
    const re = new RegExp(`^${host.split('*').map(escapeRe).join('[a-z0-9.-]+')}$`);
    return withPort({ kind: 'glob', re });
  }
  return withPort({ kind: 'host', host });
}

/** `host:port`, with IPv6 addresses in brackets. */
function hostPort(host: string, port: string): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Builds the policy from ALLOWED_TARGETS / ALLOW_PRIVATE_TARGETS; a bad entry is a ConfigError naming it. */
export function parseTargetPolicy(opts: {
  allowedTargets?: string | undefined;
  allowPrivateTargets?: boolean | undefined;
}): TargetPolicy {
  const allowPrivate = opts.allowPrivateTargets === true;
  if (opts.allowedTargets === undefined || opts.allowedTargets.trim() === '')
    return { allowed: null, allowPrivate };
  const allowed: TargetRule[] = [];
  for (const entry of opts.allowedTargets.split(',')) {
    if (entry.trim() === '') continue;
    const rule = parseRule(entry);
    if (!rule) {
      throw new ConfigError(
        `ALLOWED_TARGETS entry "${entry.trim()}" is not a host name, *.glob, IP address or CIDR (optionally with :port)`,
      );
    }
    allowed.push(rule);
  }
  return { allowed, allowPrivate };
}

export type TargetVerdict = { ok: true } | { ok: false; reason: string };

/** Decides whether a flow may navigate to `url` under the policy (the URL alone, before any lookup). */
export function checkTarget(policy: TargetPolicy, url: string): TargetVerdict {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, reason: `"${url.slice(0, 200)}" is not a valid URL` };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    return { ok: false, reason: `only http and https URLs may be opened, not ${u.protocol.slice(0, 20)}` };
  return checkHost(policy, u.hostname, u.port || (u.protocol === 'https:' ? '443' : '80'));
}

/** Whether `host:port` may be asked for (a name, or an IP literal in any spelling `new URL` accepts). */
export function checkHost(policy: TargetPolicy, hostname: string, port: string | number): TargetVerdict {
  const host = normalizeHost(hostname);
  const portText = String(port);
  const ip = parseIp(host);
  if (!policy.allowPrivate) {
    const blocked = ip ? BLOCKED.some((c) => inCidr(ip, c)) : METADATA_HOSTS.has(host);
    if (blocked) {
      return {
        ok: false,
        reason: `${host} is a link-local or cloud-metadata address; set ALLOW_PRIVATE_TARGETS=true to allow it`,
      };
    }
  }
  if (policy.allowed === null) return { ok: true };
  const match = policy.allowed.some((r) => {
    if (r.port !== undefined && r.port !== portText) return false;
    if (r.kind === 'cidr') return ip !== null && inCidr(ip, r.cidr);
    if (r.kind === 'host') return r.host === host;
    return ip === null && r.re.test(host);
  });
  return match
    ? { ok: true }
    : { ok: false, reason: `${hostPort(host, portText)} is not in ALLOWED_TARGETS` };
}

/**
 * Whether `host:port`, already allowed by checkHost, may be reached at `address`, one of the addresses
 * its name resolved to.
 */
export function checkAddress(
  policy: TargetPolicy,
  hostname: string,
  port: string | number,
  address: string,
): TargetVerdict {
  const host = normalizeHost(hostname);
  const portText = String(port);
  const ip = parseIp(address);
  if (!ip) return { ok: false, reason: `${host} resolved to "${address.slice(0, 60)}", not an IP address` };
  if (!policy.allowPrivate && BLOCKED.some((c) => inCidr(ip, c))) {
    return {
      ok: false,
      reason: `${host} resolves to ${address}, a link-local or cloud-metadata address; set ALLOW_PRIVATE_TARGETS=true to allow it`,
    };
  }
  if (policy.allowed === null || parseIp(host) !== null) return { ok: true };
  if (!INTERNAL.some((c) => inCidr(ip, c))) return { ok: true };
  // `localhost` names loopback by definition (RFC 6761): listing it says that much.
  const loopback = ip.v === 4 ? ip.n >> 24n === 127n : ip.n === 1n;
  if (loopback && (host === 'localhost' || host.endsWith('.localhost'))) return { ok: true };
  const named = policy.allowed.some(
    (r) => r.kind === 'cidr' && (r.port === undefined || r.port === portText) && inCidr(ip, r.cidr),
  );
  return named
    ? { ok: true }
    : {
        ok: false,
        reason: `${host} resolves to ${address}, an internal address ALLOWED_TARGETS does not list; add ${hostPort(address, portText)} (or its CIDR) to ALLOWED_TARGETS to allow it`,
      };
}

/** The runner's `checkUrl` hook: throws TargetNotAllowedError for a URL the policy refuses. */
export function createTargetCheck(policy: TargetPolicy): (url: string) => void {
  return (url: string) => {
    const verdict = checkTarget(policy, url);
    if (!verdict.ok) throw new TargetNotAllowedError(`navigation refused: ${verdict.reason}`);
  };
}
