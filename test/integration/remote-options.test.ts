import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { API_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { killTagged, spawnBrowserRunner, type SfwProcess } from '../helpers/runner.js';
import { upgradeAnswer } from '../helpers/upgrade.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A remote browser session's own options: `?browser=` and `?state=` on GET /v1/browser, validated as
 * POST /v1/sessions validates them, stored on the session and applied by the runner to each context the
 * client makes (the client's own fields win), and every context proxy, the client's too, routed through
 * the runner's egress proxy so the target policy holds behind it. Real API, a real `sfw runner`, real
 * Chromium, the fixture site and two tiny HTTP proxies on 127.0.0.1.
 */

let api: TestApi;
let site: FixtureServer;
let allowedProxy: TinyProxy;
let refusedProxy: TinyProxy;
let runner: SfwProcess | undefined;

interface TinyProxy {
  port: number;
  /** The targets it was asked for (CONNECT host:port or an absolute URL). */
  seen: string[];
  close(): Promise<void>;
}

/** A forward proxy: CONNECT tunnels and absolute-URL requests, each target recorded. */
async function startTinyProxy(): Promise<TinyProxy> {
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    seen.push(req.url ?? '');
    const u = new URL(req.url ?? '');
    const out = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: req.method,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', () => res.writeHead(502).end());
    req.pipe(out);
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    seen.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const up = netConnect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    sockets.add(up);
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const sitePort = () => new URL(site.url).port;

function startRunnerProcess(runnerId: string, chromiumPath: string): SfwProcess {
  // The fixture site and one of the two proxies: the other proxy's port is refused.
  return spawnBrowserRunner(api.url, runnerId, chromiumPath, {
    ALLOWED_TARGETS: `127.0.0.1:${sitePort()},127.0.0.1:${allowedProxy.port}`,
  });
}

const endpoint = (extra = '') => `${api.url.replace('http', 'ws')}/v1/browser?token=${API_TOKEN}${extra}`;
const q = (name: string, value: unknown) => `&${name}=${encodeURIComponent(JSON.stringify(value))}`;

async function connect(url: string): Promise<Browser> {
  return chromium.connect(url, { timeout: 60_000 }).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${runner?.output().slice(-3000) ?? ''}`);
  });
}

async function sessionCount(): Promise<number> {
  const { rows } = await api.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM sessions WHERE type = 'browser'`,
  );
  return rows[0]!.n;
}

async function lastBrowserSession(): Promise<{ id: string; status: string; error_message: string | null }> {
  const { rows } = await api.db.query<{ id: string; status: string; error_message: string | null }>(
    `SELECT id, status, error_message FROM sessions WHERE type = 'browser' ORDER BY created_at DESC LIMIT 1`,
  );
  return rows[0]!;
}

/** The answer to a WebSocket upgrade of GET /v1/browser with `query`, without upgrading. */
const browserUpgrade = (query: string) => upgradeAnswer(`${api.url}/v1/browser?token=${API_TOKEN}${query}`);

/** Saves `storageState` as the named state `name`, as a runner saves a session's (through the API). */
async function seedState(name: string, storageState: unknown): Promise<void> {
  await api.client.createSession({ type: 'state-seed', state: { save: name } });
  const { sessions } = await api.runnerClient.claim('seed-runner', {
    slots: 1,
    types: ['state-seed'],
    maxConcurrency: 1,
  });
  const s = sessions[0]!;
  await api.runnerClient.saveSessionState('seed-runner', s.id, {
    leaseToken: s.leaseToken,
    storageState: storageState as never,
  });
  await api.runnerClient.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded' });
}

beforeAll(async () => {
  const chromiumPath = await requireChromium();
  site = await startFixtureServer();
  allowedProxy = await startTinyProxy();
  refusedProxy = await startTinyProxy();
  api = await startTestApi('remote-options', { auth: true, staleSessionTimeoutMs: 5000 });
  runner = startRunnerProcess('remote-options-runner', chromiumPath);
  await waitFor(
    async () => {
      const { rows } = await api.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM runner_health WHERE runner_id = $1 AND status = 'running'`,
        ['remote-options-runner'],
      );
      return rows[0]!.n === 1;
    },
    { timeoutMs: 60_000, what: 'the runner registered' },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${runner?.output().slice(-3000) ?? ''}`);
  });
}, 90_000);

afterAll(async () => {
  if (runner) {
    runner.child.kill('SIGKILL');
    await killTagged(runner.tag);
  }
  await api?.stop();
  await site?.close();
  await allowedProxy?.close();
  await refusedProxy?.close();
});

describe('GET /v1/browser?browser=…&state=…', () => {
  it('refuses bad values with 400 at the field, before any upgrade, and enqueues nothing', async () => {
    const cases: [string, string][] = [
      [q('browser', { viewport: { width: 5, height: 500 } }), 'query.browser.viewport.width'],
      [q('browser', { viewport: { width: 500, height: 500 }, colour: 'red' }), 'query.browser.colour'],
      [q('browser', { proxy: { server: 'socks5://127.0.0.1:1080' } }), 'query.browser.proxy.server'],
      [q('browser', { timezoneId: 'Mars/Olympus' }), 'query.browser.timezoneId'],
      ['&browser=%7Bnot-json', 'query.browser'],
      [q('browser', [1]), 'query.browser'],
      [q('state', { use: 'bad name!' }), 'query.state.use'],
      [q('state', {}), 'query.state'],
      [q('state', { use: 'shop', save: 'shop' }), 'query.state.save'],
      ['&state=nope', 'query.state'],
    ];
    for (const [query, path] of cases) {
      const answer = await browserUpgrade(query);
      expect({ query, status: answer.status, path: answer.body.error?.path }).toEqual({
        query,
        status: 400,
        path,
      });
    }
    expect((await browserUpgrade(q('state', { save: 'x' }))).body.error?.message).toMatch(
      /remote browser session does not save/,
    );
    // chromium.connect fails at once with the answer.
    await expect(
      chromium.connect(endpoint(q('browser', { viewport: { width: 5, height: 500 } })), { timeout: 10_000 }),
    ).rejects.toThrow(/400[\s\S]*query\.browser\.viewport\.width/);
    expect(await sessionCount()).toBe(0);
  });

  it("gives each context the session's viewport and stores the options on the session (proxy password hidden)", async () => {
    const browserOptions = {
      viewport: { width: 640, height: 480 },
      locale: 'de-DE',
      proxy: { server: `http://127.0.0.1:${allowedProxy.port}`, username: 'u', password: 'secret' },
    };
    const browser = await connect(endpoint(q('browser', browserOptions)));
    const page = await browser.newPage();
    expect(page.viewportSize()).toEqual({ width: 640, height: 480 });
    await page.goto(`${site.url}/pages/simple.html`);
    expect(await page.evaluate(() => [window.innerWidth, window.innerHeight, navigator.language])).toEqual([
      640,
      480,
      'de-DE',
    ]);
    // The session's proxy is the context's upstream, behind the egress proxy.
    expect(allowedProxy.seen.some((t) => t.includes(`127.0.0.1:${sitePort()}`))).toBe(true);
    // A client's own viewport wins.
    const own = await browser.newPage({ viewport: { width: 333, height: 222 } });
    expect(await own.evaluate(() => window.innerWidth)).toBe(333);
    const { id } = await lastBrowserSession();
    const view = await api.client.getSession(id);
    expect(view.browser).toEqual({
      ...browserOptions,
      proxy: { ...browserOptions.proxy, password: '[redacted]' },
    });
    await browser.close();
    await waitFor(async () => (await lastBrowserSession()).status === 'succeeded', {
      timeoutMs: 20_000,
      what: 'the session succeeded',
    });
  }, 90_000);

  it('starts each context from the state of ?state={"use":…}; a missing state fails the session', async () => {
    await seedState('remote-shop', {
      cookies: [
        {
          name: 'sid',
          value: 'logged-in',
          domain: '127.0.0.1',
          path: '/',
          expires: -1,
          httpOnly: true,
          secure: false,
          sameSite: 'Lax',
        },
      ],
      origins: [],
    });
    const browser = await connect(endpoint(q('state', { use: 'remote-shop' })));
    const page = await browser.newPage();
    await page.goto(`${site.url}/echo/headers`);
    const headers = JSON.parse((await page.textContent('body')) ?? '{}') as Record<string, string>;
    expect(headers.cookie).toBe('sid=logged-in');
    const { id } = await lastBrowserSession();
    expect((await api.client.getSession(id)).state).toEqual({ use: 'remote-shop' });
    // A context with its own storageState keeps it.
    const clean = await browser.newContext({ storageState: { cookies: [], origins: [] } });
    expect(await clean.cookies()).toEqual([]);
    await browser.close();

    await expect(
      chromium.connect(endpoint(q('state', { use: 'never-saved' })), { timeout: 30_000 }),
    ).rejects.toThrow();
    await waitFor(async () => (await lastBrowserSession()).status === 'failed', {
      timeoutMs: 20_000,
      what: 'the session failed',
    });
    expect((await lastBrowserSession()).error_message).toContain('never-saved');
  }, 90_000);

  it("sends a client's own proxy through the egress proxy: one the policy refuses is never reached, an allowed one is", async () => {
    const browser = await connect(endpoint());
    const refused = await browser.newContext({ proxy: { server: `http://127.0.0.1:${refusedProxy.port}` } });
    const page = await refused.newPage();
    // The egress proxy answers the refused route itself (403, saying why), as it does for flows.
    const res = await page.goto(`${site.url}/pages/simple.html`, { timeout: 15_000 });
    expect(res?.status()).toBe(403);
    expect(res?.headers()['x-sfw-egress-refused']).toMatch(/not in ALLOWED_TARGETS/);
    expect(await page.textContent('body')).not.toContain('A simple page.');
    expect(refusedProxy.seen).toEqual([]);

    const before = allowedProxy.seen.length;
    const allowed = await browser.newContext({ proxy: { server: `http://127.0.0.1:${allowedProxy.port}` } });
    const ok = await allowed.newPage();
    await ok.goto(`${site.url}/pages/simple.html`);
    expect(await ok.textContent('#text')).toBe('A simple page.');
    expect(allowedProxy.seen.slice(before).some((t) => t.includes(`127.0.0.1:${sitePort()}`))).toBe(true);
    await browser.close();
  }, 90_000);

  it("never sends the Playwright server's own requests (page.request) around the target policy", async () => {
    // A target the runner's policy refuses: only the site and one proxy are allowed.
    let hits = 0;
    const refusedTarget = createServer((_req, res) => {
      hits++;
      res.end('secret');
    });
    await new Promise<void>((resolve) => refusedTarget.listen(0, '127.0.0.1', resolve));
    const port = (refusedTarget.address() as AddressInfo).port;
    try {
      const browser = await connect(endpoint());
      const page = await browser.newPage();
      const fetched = await page.request.get(`http://127.0.0.1:${port}/`, { timeout: 15_000 }).then(
        async (r) => `${r.status()} ${await r.text()}`,
        (err: unknown) => (err as Error).message,
      );
      expect(fetched).not.toContain('secret');
      expect(hits).toBe(0);
      await browser.close();
    } finally {
      refusedTarget.close();
    }
  }, 60_000);
});
