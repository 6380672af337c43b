import WebSocket from 'ws';
import type { ClaimedSession } from '../protocol/schemas.js';
import {
  RELAY_CLIENT_CLOSED,
  RELAY_CLIENT_LOST,
  RELAY_LEASE_HEADER,
  RELAY_MAX_MESSAGE_BYTES,
  REMOTE_BROWSER_TYPE,
  relayPath,
  webSocketUrl,
  type RemoteBrowserResult,
} from '../protocol/relay.js';
import {
  applyDefaults,
  contextDefaults,
  encodeContextCreation,
  errorReply,
  parseContextCreation,
  REFUSED_METHODS,
  type ContextDefaults,
  type ProxySettings,
} from './remote-context.js';
import type { ExecuteContext, Executor, LiveSource, SessionOutcome } from './types.js';

/**
 * The `browser` session type: a remote Playwright client's browser. The runner starts a Playwright server
 * for the session on loopback, dials the API's relay for the session (outbound, runner token and lease
 * token: no inbound port on runners) and passes each message between the two unchanged, counting bytes.
 * The client closing normally ends the session `succeeded`; the browser going away, `error`.
 */

/** A Playwright server for one session (injected by main.ts from the browser room). */
export interface SessionBrowserServer {
  wsEndpoint: string;
  closed: Promise<void>;
  close(): Promise<void>;
}

export interface RemoteBrowserDeps {
  apiBaseUrl: string;
  runnerToken?: string | undefined;
  runnerId: string;
  launchServer(): Promise<SessionBrowserServer>;
  /**
   * A route on the runner's egress proxy that ends at `upstream` (main.ts: EgressProxy.addRoute): the
   * proxy a context is given instead of its own, so the target policy applies before the upstream. Throws
   * for an upstream the egress proxy cannot chain to. Absent: the browser has no egress proxy.
   */
  routeProxy?(upstream: ProxySettings): { proxy: ProxySettings; close(): void };
  /**
   * The egress proxy itself, given to each context without a proxy of its own: the Playwright server's
   * own requests for a context (`context.request`, `page.request`, sent from the runner's process) take
   * the context's proxy, never Chromium's flags, and would otherwise go out around the target policy.
   */
  egressProxy?: ProxySettings;
  maxMessageBytes?: number;
  /** The server's browser as a live view (main.ts: serverLiveSource); absent: remote sessions show none. */
  liveSource?(wsEndpoint: string): LiveSource & { close(): Promise<void> };
}

/** A message from the client as it goes on: to the browser (rewritten or not), or an answer to the client. */
type Forward = Buffer | { reply: Buffer };

/**
 * The hook on the client's messages: context-creating ones get the session's defaults and their proxy
 * routed through the egress proxy (remote-context.ts); the routes it opens close with the session.
 */
function contextHook(deps: RemoteBrowserDeps, defaults: ContextDefaults, routes: (() => void)[]) {
  return (data: Buffer): Forward => {
    const creation = parseContextCreation(data);
    if (!creation) return data;
    if (REFUSED_METHODS.has(creation.method))
      return {
        reply: errorReply(
          creation.message.id,
          `${creation.method} is not available on remote sessions: its requests would leave the runner around the target policy (docs/remote.md)`,
        ),
      };
    const { params, upstream } = applyDefaults(creation.params, defaults);
    if (upstream && deps.routeProxy) {
      try {
        const route = deps.routeProxy(upstream);
        routes.push(() => route.close());
        params.proxy = route.proxy;
      } catch (err) {
        return {
          reply: errorReply(creation.message.id, `proxy ${upstream.server}: ${(err as Error).message}`),
        };
      }
    } else if (upstream) params.proxy = upstream;
    else if (deps.egressProxy) params.proxy = deps.egressProxy;
    return encodeContextCreation(creation, params);
  };
}

/** The session's `state.use` as a storage state, or the outcome that ends it (as for flows: missing fails). */
async function startingState(
  session: ClaimedSession,
  ctx: ExecuteContext,
): Promise<{ storageState?: unknown } | { outcome: SessionOutcome }> {
  const use = session.state?.use;
  if (use === undefined) return {};
  try {
    const loaded = await ctx.state.load();
    if (loaded.outcome === 'found') return { storageState: loaded.storageState };
    if (loaded.outcome === 'lease-lost')
      return { outcome: { status: 'error', errorMessage: 'lease lost before the session started' } };
    return { outcome: { status: 'failed', errorMessage: loaded.message } };
  } catch (err) {
    return {
      outcome: { status: 'error', errorMessage: `state "${use}" not loaded: ${(err as Error).message}` },
    };
  }
}

interface Opened {
  ws: WebSocket;
  /** Messages that came before the pipe listened (the API sends the client's first at once). */
  early: { data: Buffer; binary: boolean }[];
  stopBuffering(): void;
}

/** Opens a WebSocket, settling once it is open (or failed, or the signal aborted); buffers what comes first. */
function open(url: string, opts: WebSocket.ClientOptions, signal: AbortSignal): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const early: Opened['early'] = [];
    const buffer = (data: Buffer, binary: boolean) => early.push({ data, binary });
    ws.on('message', buffer);
    const onAbort = () => {
      ws.terminate();
      reject(new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body = (body + c).slice(0, 2000)));
      res.on('end', () => {
        signal.removeEventListener('abort', onAbort);
        let message = body;
        try {
          message = (JSON.parse(body) as { error?: { message?: string } }).error?.message ?? body;
        } catch {
          // not JSON: the text as it came
        }
        reject(new Error(`relay refused (${res.statusCode}): ${message}`));
      });
    });
    ws.once('open', () => {
      signal.removeEventListener('abort', onAbort);
      resolve({ ws, early, stopBuffering: () => ws.off('message', buffer) });
    });
    ws.once('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}

export { REMOTE_BROWSER_TYPE };

export function remoteBrowserExecutor(deps: RemoteBrowserDeps): Executor {
  return (session, ctx) => runRemote(deps, session, ctx);
}

async function runRemote(
  deps: RemoteBrowserDeps,
  session: ClaimedSession,
  ctx: ExecuteContext,
): Promise<SessionOutcome> {
  const maxPayload = deps.maxMessageBytes ?? RELAY_MAX_MESSAGE_BYTES;
  const t0 = Date.now();
  const starting = await startingState(session, ctx);
  const routes: (() => void)[] = [];
  const server = await deps.launchServer();
  ctx.log.info({ ms: Date.now() - t0 }, 'remote browser: Playwright server started');
  const live = deps.liveSource?.(server.wsEndpoint);
  if (live) ctx.live?.(live);
  let browserWs: Opened | undefined;
  let relayWs: Opened | undefined;
  try {
    browserWs = await open(server.wsEndpoint, { maxPayload }, ctx.signal);
    relayWs = await open(
      webSocketUrl(deps.apiBaseUrl, relayPath(deps.runnerId, session.id)),
      {
        maxPayload,
        headers: {
          ...(deps.runnerToken ? { authorization: `Bearer ${deps.runnerToken}` } : {}),
          [RELAY_LEASE_HEADER]: session.leaseToken,
        },
      },
      ctx.signal,
    );
    ctx.log.info({ ms: Date.now() - t0 }, 'remote browser: relay attached');
    if ('outcome' in starting) {
      // The client's connect fails with why (the relay closes its socket with this reason).
      const ws = relayWs.ws;
      const closed = new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        setTimeout(resolve, 2000).unref();
      });
      ws.close(1008, (starting.outcome.errorMessage ?? 'session ended').slice(0, 120));
      await closed;
      return starting.outcome;
    }
    const hook = contextHook(deps, contextDefaults(session.browser, starting.storageState), routes);
    return await pipe(browserWs, relayWs, server, session, ctx, t0, hook);
  } catch (err) {
    if (ctx.signal.aborted) return { status: 'cancelled', errorMessage: 'aborted' };
    return { status: 'error', errorMessage: (err as Error).message };
  } finally {
    browserWs?.ws.terminate();
    relayWs?.ws.terminate();
    if (live) {
      ctx.live?.(undefined);
      await live.close().catch(() => undefined);
    }
    await server.close().catch(() => undefined);
    for (const close of routes) close();
  }
}

function pipe(
  browserSide: Opened,
  relaySide: Opened,
  server: SessionBrowserServer,
  session: ClaimedSession,
  ctx: ExecuteContext,
  t0: number,
  hook?: (data: Buffer) => Forward,
): Promise<SessionOutcome> {
  const stats: RemoteBrowserResult['relay'] = {
    bytesFromClient: 0,
    bytesToClient: 0,
    messagesFromClient: 0,
    messagesToClient: 0,
    ms: 0,
  };
  const browser = browserSide.ws;
  const relay = relaySide.ws;
  const result = (): RemoteBrowserResult => ({ relay: { ...stats, ms: Date.now() - t0 } });
  return new Promise<SessionOutcome>((resolve) => {
    let done = false;
    const finish = (o: SessionOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onAbort);
      resolve({ ...o, result: result() });
    };
    const timer = setTimeout(() => {
      relay.close(1008, `session timeout (${session.timeoutMs} ms)`);
      finish({
        status: 'failed',
        errorMessage: `the connection outlived the session's timeoutMs (${session.timeoutMs} ms)`,
      });
    }, session.timeoutMs);
    const onAbort = () => {
      relay.close(1001, 'session ended by the runner');
      finish({ status: 'cancelled', errorMessage: 'aborted' });
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });

    const fromClient = (data: Buffer, binary: boolean) => {
      stats.bytesFromClient += data.length;
      stats.messagesFromClient++;
      const out = hook ? hook(data) : data;
      if (Buffer.isBuffer(out)) browser.send(out, { binary });
      else relay.send(out.reply, { binary: false });
    };
    const toClient = (data: Buffer, binary: boolean) => {
      stats.bytesToClient += data.length;
      stats.messagesToClient++;
      relay.send(data, { binary });
    };
    browserSide.stopBuffering();
    relaySide.stopBuffering();
    relay.on('message', fromClient);
    browser.on('message', toClient);
    for (const m of browserSide.early.splice(0)) toClient(m.data, m.binary);
    for (const m of relaySide.early.splice(0)) fromClient(m.data, m.binary);
    relay.on('close', (code, reason) => {
      const why = reason.toString();
      if (code === RELAY_CLIENT_CLOSED) finish({ status: 'succeeded' });
      else if (code === RELAY_CLIENT_LOST)
        finish({ status: 'failed', errorMessage: `the client's connection ended: ${why}` });
      else
        finish({
          status: 'error',
          errorMessage: `relay closed (${code}${why ? `: ${why}` : ''})`,
        });
    });
    const browserGone = () => {
      relay.close(1011, 'the browser closed');
      finish({ status: 'error', errorMessage: 'the browser closed during the connection' });
    };
    browser.on('close', browserGone);
    void server.closed.then(browserGone);
    relay.on('error', () => undefined);
    browser.on('error', () => undefined);
  });
}
