import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '@session-framework/sdk';
import { EgressProxy } from '../../src/browser/egress.js';
import { BrowserPool } from '../../src/browser/pool.js';
import type { FlowStep } from '../../src/protocol/flow.js';
import type { BrowserOptions } from '../../src/protocol/schemas.js';
import {
  checkAddress,
  checkHost,
  createTargetCheck,
  parseTargetPolicy,
  type TargetPolicy,
} from '../../src/protocol/targets.js';
import { executeSession } from '../../src/sessions/execute.js';
import { flowSessionType } from '../../src/sessions/registry.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { freePort } from '../helpers/ports.js';
import { startRunner, type InProcessRunner } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';

/**
 * A session's own proxy (`browser.proxy`) behind the runner's egress proxy, end to end: API, Postgres, a
 * runner with Chromium, the egress proxy and two upstream proxies written here (one open, one asking for
 * basic credentials). The upstream gets the session's traffic with the session's credentials, the target
 * policy still holds for every target and for the upstream's own address, and each failure says which
 * proxy failed and why, never with the password.
 */

const PASSWORD = 'hunter2-upstream';
const AUTH = `Basic ${Buffer.from(`ada:${PASSWORD}`).toString('base64')}`;

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
}

interface Upstream {
  port: number;
  server: string;
  seen: Seen[];
  close(): Promise<void>;
}

/**
 * An HTTP proxy (absolute-form requests and CONNECT) that records what it was asked, needing `auth` if
 * given; over TLS (an https:// proxy) with `tls`.
 */
async function startUpstream(auth?: string, tls?: { key: Buffer; cert: Buffer }): Promise<Upstream> {
  const seen: Seen[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const proxyAuth = req.headers['proxy-authorization'];
    seen.push({ method: req.method ?? '', url: req.url ?? '', auth: proxyAuth });
    if (auth !== undefined && proxyAuth !== auth) {
      req.resume();
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="upstream"' }).end();
      return;
    }
    const u = new URL(req.url ?? '');
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const out = httpRequest(
      { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: req.method, headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    out.on('error', () => res.writeHead(502).end());
    req.pipe(out);
  };
  const server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const proxyAuth = req.headers['proxy-authorization'];
    seen.push({ method: 'CONNECT', url: req.url ?? '', auth: proxyAuth });
    socket.on('error', () => socket.destroy());
    if (auth !== undefined && proxyAuth !== auth) {
      socket.end(
        'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="upstream"\r\nContent-Length: 0\r\n\r\n',
      );
      return;
    }
    const [host, port] = (req.url ?? '').split(':');
    const out = connect(Number(port), host, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) out.write(head);
      out.pipe(socket);
      socket.pipe(out);
    });
    out.on('error', () => socket.destroy());
    socket.once('close', () => out.destroy());
  });
  const port = await listen(server);
  return {
    port,
    server: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    seen,
    close: () => closeServer(server),
  };
}

async function listen(server: Server): Promise<number> {
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

let api: TestApi;
let site: FixtureServer;
let policy: TargetPolicy;
let egress: EgressProxy;
let pool: BrowserPool;
let runner: InProcessRunner;
let open: Upstream;
let locked: Upstream;
/** A proxy the policy does not list. */
let unlisted: Upstream;
/** An https:// proxy asking for the credentials; its certificate is trusted once the first test ran. */
let tlsProxy: Upstream;
/** A listed proxy port with nothing listening. */
let downPort: number;
/** A server the policy does not list, counting the connections it gets. */
let blocked: { port: number; tcp: number; close(): Promise<void> };
/** A listed server answering /redirect?to=… with a 302. */
let redirector: { url: string; close(): Promise<void> };
/** A listed https server with a self-signed certificate. */
let secure: { url: string; close(): Promise<void> };
let certDir: string;
let certPem: string;
const egressLog: string[] = [];

beforeAll(async () => {
  const executablePath = await requireChromium();
  site = await startFixtureServer();
  open = await startUpstream();
  locked = await startUpstream(AUTH);
  unlisted = await startUpstream();
  downPort = await freePort();

  const blockedServer = createHttpServer((_req, res) => res.end('secret'));
  const counts = { tcp: 0 };
  blockedServer.on('connection', () => counts.tcp++);
  const blockedPort = await listen(blockedServer);
  blocked = {
    port: blockedPort,
    get tcp() {
      return counts.tcp;
    },
    close: () => closeServer(blockedServer),
  };

  const redirectServer = createHttpServer((req, res) => {
    const to = new URL(req.url ?? '/', 'http://x').searchParams.get('to') ?? '/';
    res.writeHead(302, { location: to }).end();
  });
  redirector = {
    url: `http://127.0.0.1:${await listen(redirectServer)}`,
    close: () => closeServer(redirectServer),
  };

  certDir = await mkdtemp(join(tmpdir(), 'sfw-proxy-cert-'));
  await new Promise<void>((resolve, reject) =>
    execFile(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(certDir, 'key.pem'),
        '-out',
        join(certDir, 'cert.pem'),
      ],
      (err) => (err ? reject(new Error(`openssl failed: ${err.message}`)) : resolve()),
    ),
  );
  const keyPair = {
    key: await readFile(join(certDir, 'key.pem')),
    cert: await readFile(join(certDir, 'cert.pem')),
  };
  certPem = keyPair.cert.toString();
  tlsProxy = await startUpstream(AUTH, keyPair);
  const secureServer = createHttpsServer(keyPair, (_req, res) =>
    res
      .writeHead(200, { 'content-type': 'text/html' })
      .end('<title>secure</title><p id="text">over TLS through the upstream</p>'),
  );
  secure = {
    url: `https://127.0.0.1:${await listen(secureServer)}`,
    close: () => closeServer(secureServer),
  };

  const sitePort = new URL(site.url).port;
  policy = parseTargetPolicy({
    allowedTargets: [
      `127.0.0.1:${sitePort}`,
      new URL(redirector.url).host,
      new URL(secure.url).host,
      `127.0.0.1:${open.port}`,
      `127.0.0.1:${locked.port}`,
      `127.0.0.1:${tlsProxy.port}`,
      `127.0.0.1:${downPort}`,
    ].join(','),
  });
  egress = new EgressProxy({
    rules: {
      checkName: (host, port) => checkHost(policy, host, port),
      checkAddress: (host, port, address) => checkAddress(policy, host, port, address),
    },
    log: (msg, data) => egressLog.push(`${msg} ${JSON.stringify(data)}`),
  });
  await egress.start();
  pool = new BrowserPool({ executablePath, egress });
  await pool.start();

  api = await startTestApi('browser_proxy');
  const flow = flowSessionType();
  runner = await startRunner(api, {
    runnerId: 'browser-proxy-runner',
    types: [{ name: 'flow', browser: true }],
    executor: (session, ctx) =>
      executeSession({
        session,
        type: flow,
        pool,
        signal: ctx.signal,
        abort: (reason) => ctx.abort(reason),
        upload: (name, data, contentType) => ctx.upload(name, data, contentType),
        log: ctx.log,
        flow: { checkUrl: createTargetCheck(policy), defaultStepTimeoutMs: 10_000 },
      }),
  });
});

afterAll(async () => {
  await runner?.stop();
  await pool?.close();
  await egress?.close();
  await api?.stop();
  for (const s of [site, open, locked, unlisted, tlsProxy, blocked, redirector, secure]) await s?.close();
  if (certDir) await rm(certDir, { recursive: true, force: true });
});

const page = () => `${site.url}/pages/simple.html`;
const extractText: FlowStep = { action: 'extract', selector: '#text', as: 'text' };

/** Runs a flow session with `browser` options through the API and the runner; its final state. */
async function run(steps: FlowStep[], browser?: BrowserOptions) {
  const s = await api.client.createSession({
    type: 'flow',
    input: { steps },
    ...(browser ? { browser } : {}),
  });
  return api.client.waitUntilDone(s.id, { timeoutMs: 30_000 });
}

describe('a session with browser.proxy', () => {
  it('fetches the page through the upstream proxy, with the proxy credentials it was given', async () => {
    const before = open.seen.length;
    const done = await run([{ action: 'goto', url: page() }, extractText], {
      proxy: { server: locked.server, username: 'ada', password: PASSWORD },
    });
    expect(done.errorMessage).toBeNull();
    expect(done.status).toBe('succeeded');
    expect((done.result as { extracted: unknown }).extracted).toEqual({ text: 'A simple page.' });
    const got = locked.seen.filter((s) => s.url === page());
    expect(got.length).toBeGreaterThan(0);
    expect(got.every((s) => s.method === 'GET' && s.auth === AUTH)).toBe(true);
    // The answer shows the password as [redacted]; the other upstream was not involved.
    expect(done.browser?.proxy).toEqual({ server: locked.server, username: 'ada', password: '[redacted]' });
    expect(open.seen.length).toBe(before);
  });

  it('tunnels https through the upstream with CONNECT (a context from the pool, as code sessions get)', async () => {
    const lease = await pool.acquire({
      contextOptions: {
        proxy: { server: locked.server, username: 'ada', password: PASSWORD },
        ignoreHTTPSErrors: true,
      },
    });
    try {
      const res = await lease.page.goto(`${secure.url}/x`);
      expect(res?.status()).toBe(200);
      expect(await lease.page.textContent('#text')).toBe('over TLS through the upstream');
    } finally {
      await lease.release();
    }
    const host = new URL(secure.url).host;
    const tunnels = locked.seen.filter((s) => s.method === 'CONNECT' && s.url === host);
    expect(tunnels.length).toBeGreaterThan(0);
    expect(tunnels.every((s) => s.auth === AUTH)).toBe(true);
  });

  it('a session without one does not touch the upstream, nor does the next one on a kept browser', async () => {
    const before = { open: open.seen.length, locked: locked.seen.length };
    const done = await run([{ action: 'goto', url: page() }, extractText]);
    expect(done.status).toBe('succeeded');
    expect(done.browser).toBeNull();
    expect({ open: open.seen.length, locked: locked.seen.length }).toEqual(before);
  });

  it('still refuses a target the policy forbids: before the goto, and on a redirect the egress proxy sees', async () => {
    const proxy = { server: open.server };
    const forbidden = `http://127.0.0.1:${blocked.port}/secret`;
    const direct = await run([{ action: 'goto', url: forbidden }], { proxy });
    expect(direct.status).toBe('failed');
    expect(direct.errorMessage).toMatch(
      new RegExp(`navigation refused: 127\\.0\\.0\\.1:${blocked.port} is not in ALLOWED_TARGETS`),
    );
    for (const to of [forbidden, `https://127.0.0.1:${blocked.port}/secret`]) {
      const redirected = await run(
        [{ action: 'goto', url: `${redirector.url}/redirect?to=${encodeURIComponent(to)}` }],
        { proxy },
      );
      expect(redirected.status, to).toBe('failed');
      expect(redirected.errorMessage, to).toContain(
        `navigation to ${to} refused: 127.0.0.1:${blocked.port} is not in ALLOWED_TARGETS`,
      );
    }
    // The redirect went through the upstream; the forbidden target never reached it, nor the server.
    expect(open.seen.some((s) => s.url.startsWith(`${redirector.url}/redirect`))).toBe(true);
    expect(open.seen.some((s) => s.url.includes(`:${blocked.port}`))).toBe(false);
    expect(blocked.tcp).toBe(0);
  });

  it('an upstream proxy the policy does not list is refused, naming it and ALLOWED_TARGETS', async () => {
    const done = await run([{ action: 'goto', url: page() }], { proxy: { server: unlisted.server } });
    expect(done.status).toBe('failed');
    expect(done.errorMessage).toContain(
      `navigation to ${page()} refused: proxy ${unlisted.server}: 127.0.0.1:${unlisted.port} is not in ALLOWED_TARGETS`,
    );
    expect(unlisted.seen).toEqual([]);
  });

  it('wrong or missing credentials fail the navigation saying so, never with the password', async () => {
    const wrong = await run([{ action: 'goto', url: page() }], {
      proxy: { server: locked.server, username: 'ada', password: 'not-the-password' },
    });
    expect(wrong.status).toBe('failed');
    expect(wrong.errorMessage).toContain(
      `navigation to ${page()} failed: proxy ${locked.server} refused the credentials (407 Proxy Authentication Required): check browser.proxy.username and password`,
    );
    expect(wrong.errorMessage).not.toContain('not-the-password');
    const none = await run([{ action: 'goto', url: page() }], { proxy: { server: locked.server } });
    expect(none.errorMessage).toContain(
      `proxy ${locked.server} asks for credentials (407 Proxy Authentication Required): set browser.proxy.username and password`,
    );
    const https = await run([{ action: 'goto', url: `${secure.url}/x` }], {
      proxy: { server: locked.server, username: 'ada', password: 'not-the-password' },
    });
    expect(https.errorMessage).toContain(
      `navigation to ${secure.url}/x failed: proxy ${locked.server} refused the credentials`,
    );
  });

  it('an https:// upstream proxy: its certificate is checked, then http and https go through it over TLS', async () => {
    const proxy = { server: tlsProxy.server, username: 'ada', password: PASSWORD };
    const untrusted = await run([{ action: 'goto', url: page() }], { proxy });
    expect(untrusted.errorMessage).toBe(
      `step 1 (goto): navigation to ${page()} failed: proxy ${tlsProxy.server}: its TLS certificate was not accepted (DEPTH_ZERO_SELF_SIGNED_CERT)`,
    );
    expect(tlsProxy.seen).toEqual([]);
    // Trusted as a CA the runner's machine has: the page comes through it, its credentials with it.
    setDefaultCACertificates([...getCACertificates('default'), certPem]);
    const done = await run([{ action: 'goto', url: page() }, extractText], { proxy });
    expect(done.errorMessage).toBeNull();
    expect((done.result as { extracted: unknown }).extracted).toEqual({ text: 'A simple page.' });
    expect(tlsProxy.seen.some((s) => s.method === 'GET' && s.url === page() && s.auth === AUTH)).toBe(true);
    const host = new URL(secure.url).host;
    const tunnelled = await run([{ action: 'goto', url: `${secure.url}/x` }], { proxy });
    // The target's own certificate is Chromium's to check (and it does not trust it): the tunnel was made.
    expect(tunnelled.errorMessage).toMatch(/ERR_CERT_AUTHORITY_INVALID/);
    expect(tlsProxy.seen.some((s) => s.method === 'CONNECT' && s.url === host && s.auth === AUTH)).toBe(true);
  });

  it('an upstream proxy that is down fails the navigation naming the proxy', async () => {
    const server = `http://127.0.0.1:${downPort}`;
    for (const url of [page(), `${secure.url}/x`]) {
      const done = await run([{ action: 'goto', url }], {
        proxy: { server, username: 'ada', password: PASSWORD },
      });
      expect(done.status, url).toBe('failed');
      expect(done.errorMessage, url).toBe(
        `step 1 (goto): navigation to ${url} failed: proxy ${server} could not be reached (ECONNREFUSED)`,
      );
    }
  });

  it("the egress proxy's own credentials open nothing without the context, and its log carries no password", async () => {
    // Each context's route is gone once its context is: none is left open.
    await waitFor(() => egress.routeCount === 0, { what: 'every route to be closed', timeoutMs: 10_000 });
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect(egress.chainPort, '127.0.0.1', () =>
        s.write(
          `CONNECT 127.0.0.1:${open.port} HTTP/1.1\r\nProxy-Authorization: Basic ${btoa('ctx-1:x')}\r\n\r\n`,
        ),
      );
      s.once('data', (d: Buffer) => {
        resolve(d.toString('latin1'));
        s.destroy();
      });
      s.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 407 /);
    expect(answer).toContain('Proxy-Authenticate: Basic realm="sfw-egress"');
    const text = egressLog.join('\n');
    expect(text).toContain('browser connection refused');
    expect(text).toContain(`"proxy":"${open.server}"`);
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain('not-the-password');
  });
});

describe('browser.proxy at enqueue', () => {
  it('refuses a proxy that is not http(s)://host:port at body.browser.proxy.server, saying what is supported', async () => {
    const cases: [unknown, string, RegExp][] = [
      [
        { server: 'socks5://127.0.0.1:1080' },
        'body.browser.proxy.server',
        /socks5:\/\/ proxies are not supported: use http:\/\/host:port or https:\/\/host:port/,
      ],
      [
        { server: 'ftp://proxy.example:21' },
        'body.browser.proxy.server',
        /ftp:\/\/ proxies are not supported/,
      ],
      [{ server: 'proxy.example:3128' }, 'body.browser.proxy.server', /not supported|not a proxy URL/],
      [
        { server: 'http://ada:pw@proxy.example:3128' },
        'body.browser.proxy.server',
        /give browser\.proxy\.username and password/,
      ],
      [{ server: 'http://proxy.example:3128/path' }, 'body.browser.proxy.server', /must not have a path/],
      [{ server: 'not a url' }, 'body.browser.proxy.server', /is not a proxy URL/],
      [{ server: '' }, 'body.browser.proxy.server', /./],
      [{ server: 'http://proxy.example', password: 'x' }, 'body.browser.proxy.username', /is required/],
      [
        { server: 'http://proxy.example', username: 'a:b' },
        'body.browser.proxy.username',
        /must not contain ":"/,
      ],
    ];
    for (const [proxy, path, message] of cases) {
      const err = await api.client
        .createSession({
          type: 'flow',
          input: { steps: [{ action: 'goto', url: 'http://example.com/' }] },
          browser: { proxy } as BrowserOptions,
        })
        .catch((e: unknown) => e);
      expect(err, JSON.stringify(proxy)).toBeInstanceOf(ApiError);
      expect({ proxy, status: (err as ApiError).httpStatus, path: (err as ApiError).path }).toEqual({
        proxy,
        status: 400,
        path,
      });
      expect((err as ApiError).message).toMatch(message);
    }
    const list = await api.client.listSessions({ type: 'flow', limit: 200 });
    expect(list.items.some((s) => JSON.stringify(s.browser ?? {}).includes('proxy.example'))).toBe(false);
  });
});
