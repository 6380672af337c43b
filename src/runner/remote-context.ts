import type { BrowserOptions } from '../protocol/schemas.js';

/**
 * A remote browser session's own options (`browser`, `state.use`) applied to the contexts its client
 * makes: the runner sees each Playwright protocol message from the client on its way to the Playwright
 * server, and rewrites the ones that create a context (`Browser.newContext`, `newContextForReuse`). A field
 * the client set wins, but never its proxy: every context proxy, the client's or the session's, is given
 * to Chromium as a route on the runner's egress proxy, so the target policy applies behind it too.
 * Everything else passes byte for byte.
 */

/** The Browser methods (playwright-core 1.65) whose params make a context. */
export const CONTEXT_METHODS: ReadonlySet<string> = new Set(['newContext', 'newContextForReuse']);
/**
 * Methods refused to remote clients: `Playwright.newRequest` makes an APIRequestContext whose requests
 * the Playwright server sends from the runner's own process, around the egress proxy (playwright-core's
 * client never sends it over `connect`).
 */
export const REFUSED_METHODS: ReadonlySet<string> = new Set(['newRequest']);

/** A proxy as Playwright's context options take it. */
export interface ProxySettings {
  server: string;
  username?: string;
  password?: string;
}

/** What a session gives each context of its client, in Playwright protocol form. */
export interface ContextDefaults {
  /** newContext params that apply where the client gave none (viewport, locale, userAgent, …). */
  params: Record<string, unknown>;
  /** The session's `browser.proxy`: the upstream of a context whose client gives none. */
  proxy?: ProxySettings;
  /** The session's `state.use`, as Playwright's storageState. */
  storageState?: unknown;
}

/** A client message that creates a context (or a refused one): the whole message and its params. */
export interface ContextCreation {
  method: string;
  message: Record<string, unknown> & { id?: unknown };
  params: Record<string, unknown>;
}

/** The params to send and the upstream proxy the context must reach through the egress proxy, if any. */
export interface RewrittenContext {
  params: Record<string, unknown>;
  upstream?: ProxySettings;
}

const NEEDLE = Buffer.from('newContext');
const REFUSED_NEEDLE = Buffer.from('newRequest');
// The Playwright server reads every frame, text or binary, with JSON.parse, which decodes \u escapes: a
// method name written with them must be caught as well, so such a message is parsed too.
const ESCAPE = Buffer.from('\\u');

/** A cheap first look: only a message with one of these can create a context. */
export function mayCreateContext(data: Buffer): boolean {
  return data.includes(NEEDLE) || data.includes(REFUSED_NEEDLE) || data.includes(ESCAPE);
}

/**
 * The message parsed when it creates a context or is refused (REFUSED_METHODS); undefined for any other
 * message (or one not JSON).
 */
export function parseContextCreation(data: Buffer): ContextCreation | undefined {
  if (!mayCreateContext(data)) return undefined;
  let message: unknown;
  try {
    message = JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(message) || typeof message.method !== 'string') return undefined;
  const method = message.method;
  if (!CONTEXT_METHODS.has(method) && !REFUSED_METHODS.has(method)) return undefined;
  const params = isObject(message.params) ? message.params : {};
  return { method, message, params };
}

/** The session's browser options and state as newContext defaults (protocol form). */
export function contextDefaults(
  browser: BrowserOptions | null | undefined,
  storageState?: unknown,
): ContextDefaults {
  const params: Record<string, unknown> = {};
  const out: ContextDefaults = { params };
  if (browser) {
    if (browser.viewport)
      params.viewport = { width: browser.viewport.width, height: browser.viewport.height };
    if (browser.locale !== undefined) params.locale = browser.locale;
    if (browser.timezoneId !== undefined) params.timezoneId = browser.timezoneId;
    if (browser.userAgent !== undefined) params.userAgent = browser.userAgent;
    if (browser.javaScriptEnabled !== undefined) params.javaScriptEnabled = browser.javaScriptEnabled;
    // The protocol takes headers as a list of name and value.
    if (browser.extraHTTPHeaders)
      params.extraHTTPHeaders = Object.entries(browser.extraHTTPHeaders).map(([name, value]) => ({
        name,
        value,
      }));
    if (browser.proxy) out.proxy = proxyOf(browser.proxy) ?? { server: browser.proxy.server };
  }
  if (storageState !== undefined) out.storageState = storageState;
  return out;
}

/**
 * The context's params with the session's defaults where the client gave none, and without any proxy:
 * the upstream (the client's, else the session's) is returned for the caller to route.
 */
export function applyDefaults(params: Record<string, unknown>, defaults: ContextDefaults): RewrittenContext {
  const out: Record<string, unknown> = { ...params };
  for (const [key, value] of Object.entries(defaults.params)) {
    if (out[key] !== undefined) continue;
    // `viewport: null` reaches the server as noDefaultViewport: the client's choice of no viewport.
    if (key === 'viewport' && out.noDefaultViewport === true) continue;
    out[key] = value;
  }
  if (out.storageState === undefined && defaults.storageState !== undefined)
    out.storageState = defaults.storageState;
  const upstream = proxyOf(out.proxy) ?? defaults.proxy;
  delete out.proxy;
  return upstream ? { params: out, upstream } : { params: out };
}

/** The message again with new params, as the Playwright server reads it. */
export function encodeContextCreation(creation: ContextCreation, params: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify({ ...creation.message, params }));
}

/** A Playwright protocol error answer to the client's message `id`. */
export function errorReply(id: unknown, message: string): Buffer {
  return Buffer.from(JSON.stringify({ id, error: { error: { message, name: 'Error', stack: '' } } }));
}

/**
 * A proxy from the client's params: its server, username and password. Its `bypass` is dropped: a bypassed
 * host would be reached straight from Chromium, around the egress proxy.
 */
function proxyOf(value: unknown): ProxySettings | undefined {
  if (!isObject(value) || typeof value.server !== 'string') return undefined;
  const p: ProxySettings = { server: value.server };
  if (typeof value.username === 'string') p.username = value.username;
  if (typeof value.password === 'string') p.password = value.password;
  return p;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
