import { execFile, spawnSync } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import {
  EGRESS_ERROR_HEADER,
  EGRESS_REFUSED_HEADER,
  EgressProxy,
  type EgressRules,
  type LookupAll,
} from '../../src/browser/egress.js';
import { BrowserPool } from '../../src/browser/pool.js';
import type { FlowStep } from '../../src/protocol/flow.js';
import {
  checkAddress,
  checkHost,
  createTargetCheck,
  parseTargetPolicy,
  type TargetPolicy,
} from '../../src/protocol/targets.js';
import { RUNNER_CONFIG_KEYS, startRunner } from '../../src/runner/main.js';
import { FlowStepError, runFlow } from '../../src/sessions/flow.js';
import { startTestApi } from '../helpers/api.js';
import { freePort } from '../helpers/ports.js';
import { silentLog } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';
import { requireChromium } from '../helpers/chromium.js';

/**
 * The target policy holds for every connection the browser makes, not only the `goto` URL: a page on
 * the allowed server tries each way to reach the blocked server, which counts every TCP connection and
 * UDP datagram it receives and must receive none.
 */

const FIXTURES = fileURLToPath(new URL('../fixtures/egress/', import.meta.url));

interface Site {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** The allowed site: fixture pages with `{{to}}` filled from the query, and /redirect?to=… (302). */
async function startAllowedSite(): Promise<Site> {
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const to = u.searchParams.get('to') ?? '';
    if (u.pathname === '/redirect') {
      res.writeHead(302, { location: to }).end();
      return;
    }
    const name = u.pathname.slice(1);
    if (!/^[a-z]+\.html$/.test(name)) {
      res.writeHead(404).end();
      return;
    }
    readFile(`${FIXTURES}${name}`, 'utf8').then(
      (html) => {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(html.replaceAll('{{to}}', to.replace(/[<>"'&]/g, '')));
      },
      () => res.writeHead(404).end(),
    );
  });
  return listen(server);
}

interface Blocked extends Site {
  tcp: number;
  udp: number;
}

/** The blocked target: an HTTP server and a UDP socket on one port number, counting what arrives. */
async function startBlocked(): Promise<Blocked> {
  const server = createServer((_req, res) => res.end('secret'));
  const site = await listen(server);
  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((resolve) => udp.bind(site.port, '127.0.0.1', resolve));
  const counts = { tcp: 0, udp: 0 };
  server.on('connection', () => counts.tcp++);
  udp.on('message', () => counts.udp++);
  return {
    ...site,
    get tcp() {
      return counts.tcp;
    },
    get udp() {
      return counts.udp;
    },
    close: async () => {
      udp.close();
      await site.close();
    },
  };
}

async function listen(server: Server): Promise<Site> {
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The rules as the runner wires them, recording every host:port the proxy was asked for. */
function rulesOf(policy: TargetPolicy, asked: Set<string>): EgressRules {
  return {
    checkName: (host, port) => {
      asked.add(`${host}:${port}`);
      return checkHost(policy, host, port);
    },
    checkAddress: (host, port, address) => checkAddress(policy, host, port, address),
  };
}

/** Names that exist only here: `allowed.test` is listed but points at the blocked server's address. */
const FAKE_DNS: Record<string, string> = {
  'allowed.test': '127.0.0.1',
  'meta.test': '169.254.169.254',
};
const lookups: string[] = [];
const fakeLookup: LookupAll = async (host) => {
  lookups.push(host);
  const address = FAKE_DNS[host];
  if (!address) throw Object.assign(new Error(`no such host ${host}`), { code: 'ENOTFOUND' });
  return [{ address, family: 4 }];
};

let allowed: Site;
let blocked: Blocked;
let policy: TargetPolicy;
/** Listed, with nothing listening. */
let downPort: number;
let proxy: EgressProxy;
let pool: BrowserPool;
const asked = new Set<string>();

beforeAll(async () => {
  const executablePath = await requireChromium();
  allowed = await startAllowedSite();
  blocked = await startBlocked();
  downPort = await freePort();
  policy = parseTargetPolicy({
    allowedTargets: `127.0.0.1:${allowed.port},127.0.0.1:${downPort},allowed.test,meta.test`,
  });
  proxy = new EgressProxy({ rules: rulesOf(policy, asked), lookup: fakeLookup });
  await proxy.start();
  pool = new BrowserPool({ executablePath, egress: proxy });
  await pool.start();
});
afterAll(async () => {
  await pool?.close();
  await proxy?.close();
  await allowed?.close();
  await blocked?.close();
});

/** Runs a flow as the runner does (the pre-goto check included); the error message when it fails. */
async function flow(
  steps: FlowStep[],
): Promise<{ ok: true; extracted: unknown } | { ok: false; error: string }> {
  const lease = await pool.acquire();
  try {
    const result = await runFlow(
      lease.page,
      { steps },
      {
        signal: new AbortController().signal,
        defaultStepTimeoutMs: 10_000,
        checkUrl: createTargetCheck(policy),
        onScreenshot: async () => {},
      },
    );
    return { ok: true, extracted: result.extracted };
  } catch (err) {
    if (err instanceof FlowStepError) return { ok: false, error: err.message };
    throw err;
  } finally {
    await lease.release();
  }
}

const page = (name: string, to: string) => `${allowed.url}/${name}?to=${encodeURIComponent(to)}`;
const blockedTarget = () => `127.0.0.1:${blocked.port}`;
const refusedByList = () => new RegExp(`refused: 127\\.0\\.0\\.1:${blocked.port} is not in ALLOWED_TARGETS`);

/** The browser asked for the blocked server (so it did try) and the blocked server received nothing. */
async function expectTriedAndStopped(target = blockedTarget()): Promise<void> {
  await waitFor(() => asked.has(target), {
    what: `the browser to ask the proxy for ${target}`,
    timeoutMs: 10_000,
  });
  expect(blocked.tcp).toBe(0);
  expect(blocked.udp).toBe(0);
}

describe('a page on an allowed host cannot reach a blocked one', () => {
  it('loads the allowed server through the proxy', async () => {
    const r = await flow([
      { action: 'goto', url: `${allowed.url}/ok.html` },
      { action: 'extract', selector: '#title', as: 'title' },
    ]);
    expect(r).toEqual({ ok: true, extracted: { title: 'allowed page' } });
    expect(asked.has(`127.0.0.1:${allowed.port}`)).toBe(true);
  });

  it('refuses a goto to the blocked server before the browser starts it, naming ALLOWED_TARGETS', async () => {
    const r = await flow([{ action: 'goto', url: `http://${blockedTarget()}/secret` }]);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.error).toMatch(
        /step 1 \(goto\): navigation refused: 127\.0\.0\.1:\d+ is not in ALLOWED_TARGETS/,
      );
    expect(blocked.tcp).toBe(0);
  });

  it('an HTTP 302 to http:// on the blocked server fails the goto with the reason', async () => {
    asked.clear();
    const r = await flow([
      { action: 'goto', url: `${allowed.url}/redirect?to=http://${blockedTarget()}/secret` },
    ]);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toMatch(/^step 1 \(goto\): navigation to http:\/\/127\.0\.0\.1:\d+\/secret /);
      expect(r.error).toMatch(refusedByList());
    }
    await expectTriedAndStopped();
  });

  it('an HTTP 302 to https:// on the blocked server (a CONNECT) fails the goto with the reason', async () => {
    asked.clear();
    const r = await flow([
      { action: 'goto', url: `${allowed.url}/redirect?to=https://${blockedTarget()}/secret` },
    ]);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toMatch(/^step 1 \(goto\): navigation to https:\/\/127\.0\.0\.1:\d+\/secret /);
      expect(r.error).toMatch(refusedByList());
      expect(r.error).not.toMatch(/ERR_TUNNEL_CONNECTION_FAILED/);
    }
    await expectTriedAndStopped();
  });

  for (const [name, file, extra] of [
    ['location.href =', 'location.html', []],
    ['<meta http-equiv=refresh>', 'meta.html', []],
    ['a clicked link', 'link.html', [{ action: 'click', selector: '#go' }]],
  ] as const) {
    it(`${name} to the blocked server fails the running step with the reason`, async () => {
      asked.clear();
      const r = await flow([
        { action: 'goto', url: page(file, `http://${blockedTarget()}/secret`) },
        ...extra,
        { action: 'waitFor', selector: '#never-there' },
      ]);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(refusedByList());
      await expectTriedAndStopped();
    });
  }

  for (const [name, file, to, shows] of [
    ['an iframe', 'iframe.html', () => `http://${blockedTarget()}/secret`, 'frame settled'],
    ['fetch()', 'fetch.html', () => `http://${blockedTarget()}/secret`, 'fetch failed: TypeError'],
    ['window.open', 'popup.html', () => `http://${blockedTarget()}/secret`, 'popup opened'],
    ['a WebSocket', 'websocket.html', () => `ws://${blockedTarget()}/socket`, 'websocket failed'],
    ['WebRTC (STUN over UDP, TURN over TCP)', 'webrtc.html', () => blockedTarget(), 'gathered: none'],
  ] as const) {
    it(`${name} to the blocked server gets nothing through`, async () => {
      asked.clear();
      const r = await flow([
        { action: 'goto', url: page(file, to()) },
        { action: 'assert', selector: '#result, #done', text: shows },
      ]);
      expect(r).toMatchObject({ ok: true });
      await expectTriedAndStopped();
      expect(proxy.recentFailure('127.0.0.1', blocked.port)).toEqual({
        refused: true,
        reason: `127.0.0.1:${blocked.port} is not in ALLOWED_TARGETS`,
      });
    });
  }
});

describe('a listed target that is down', () => {
  it('fails the goto with the cause, for http (the proxy answers 502) and https (a failed CONNECT)', async () => {
    for (const scheme of ['http', 'https']) {
      const url = `${scheme}://127.0.0.1:${downPort}/`;
      const r = await flow([{ action: 'goto', url }]);
      expect(r.ok, scheme).toBe(false);
      if (!r.ok)
        expect(r.error).toBe(
          `step 1 (goto): navigation to ${url} failed: 127.0.0.1:${downPort} could not be reached (ECONNREFUSED)`,
        );
    }
  });
});

describe('names are checked by the address they resolve to, and connected to at that address', () => {
  it('reaches the allowed server by a listed name resolving to a listed address', async () => {
    const r = await flow([
      { action: 'goto', url: `http://allowed.test:${allowed.port}/ok.html` },
      { action: 'extract', selector: '#title', as: 'title' },
    ]);
    expect(r).toEqual({ ok: true, extracted: { title: 'allowed page' } });
  });

  it('refuses a listed name that resolves to an internal address the list does not name (DNS rebinding)', async () => {
    asked.clear();
    const target = `allowed.test:${blocked.port}`;
    const r = await flow([{ action: 'goto', url: `http://${target}/secret` }]);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.error).toContain(
        `navigation to http://${target}/secret refused: allowed.test resolves to 127.0.0.1, an internal address ALLOWED_TARGETS does not list; add 127.0.0.1:${blocked.port}`,
      );
    const sub = await flow([
      { action: 'goto', url: page('fetch.html', `https://${target}/secret`) },
      { action: 'assert', selector: '#result', text: 'fetch failed' },
    ]);
    expect(sub).toMatchObject({ ok: true });
    await expectTriedAndStopped(target);
  });

  it('refuses a listed name that resolves to the metadata address', async () => {
    const r = await flow([{ action: 'goto', url: 'http://meta.test/latest/meta-data/' }]);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.error).toContain(
        'refused: meta.test resolves to 169.254.169.254, a link-local or cloud-metadata address; set ALLOW_PRIVATE_TARGETS=true',
      );
  });
});

describe('code sessions share the browser, and so the proxy', () => {
  it('a page, and a context the code makes itself, reach the allowed server only', async () => {
    asked.clear();
    const lease = await pool.acquire();
    try {
      const refused = await lease.page.goto(`http://${blockedTarget()}/secret`);
      expect(refused?.status()).toBe(403);
      expect(refused?.headers()[EGRESS_REFUSED_HEADER]).toBe(
        `127.0.0.1:${blocked.port} is not in ALLOWED_TARGETS`,
      );
      const own = await lease.context.browser()!.newContext();
      try {
        const p = await own.newPage();
        expect((await p.goto(`${allowed.url}/ok.html`))?.status()).toBe(200);
        await expect(p.goto(`https://${blockedTarget()}/secret`)).rejects.toThrow(
          /ERR_TUNNEL_CONNECTION_FAILED/,
        );
      } finally {
        await own.close();
      }
      // Even a context given another proxy finds no way around this one: Chromium resolves no other
      // name or address, so the blocked server, named as that proxy, is not even connected to.
      const around = await lease.context
        .browser()!
        .newContext({ proxy: { server: `http://${blockedTarget()}` } });
      try {
        const p = await around.newPage();
        await expect(p.goto(`${allowed.url}/ok.html`)).rejects.toThrow(/ERR_PROXY_CONNECTION_FAILED/);
      } finally {
        await around.close();
      }
    } finally {
      await lease.release();
    }
    expect(blocked.tcp).toBe(0);
  });
});

describe('the proxy on its own', () => {
  /** One request through the proxy with a raw socket: the status line and headers it answers. */
  function viaProxy(line: string): Promise<{ status: number; headers: string }> {
    return new Promise((resolve, reject) => {
      const s = connect(proxy.port, '127.0.0.1', () => s.write(`${line}\r\nHost: x\r\n\r\n`));
      let text = '';
      s.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.destroy();
        resolve({ status: Number(text.split(' ')[1]), headers: text.slice(0, end).toLowerCase() });
      });
      s.on('error', reject);
    });
  }

  it('refuses a CONNECT with 403 and the reason, and tunnels an allowed one', async () => {
    const refused = await viaProxy(`CONNECT ${blockedTarget()} HTTP/1.1`);
    expect(refused.status).toBe(403);
    expect(refused.headers).toContain(
      `${EGRESS_REFUSED_HEADER}: 127.0.0.1:${blocked.port} is not in allowed_targets`,
    );
    expect((await viaProxy(`CONNECT 127.0.0.1:${allowed.port} HTTP/1.1`)).status).toBe(200);
    expect(blocked.tcp).toBe(0);
  });

  it('connects to the address it checked, without a second lookup', async () => {
    lookups.length = 0;
    // allowed.test exists only in the injected lookup: a second lookup by the system would fail.
    expect((await viaProxy(`CONNECT allowed.test:${allowed.port} HTTP/1.1`)).status).toBe(200);
    expect(lookups).toEqual(['allowed.test']);
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: proxy.port, path: `http://allowed.test:${allowed.port}/ok.html` },
        (res) => {
          let t = '';
          res.on('data', (d: Buffer) => (t += d.toString()));
          res.on('end', () => resolve(t));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(body).toContain('allowed page');
    expect(lookups).toEqual(['allowed.test', 'allowed.test']);
  });

  it('refuses to connect to itself and answers 502 with the cause for a target that is down', async () => {
    const self = await viaProxy(`CONNECT 127.0.0.1:${proxy.port} HTTP/1.1`);
    expect(self.status).toBe(403);
    const open = new EgressProxy({ rules: rulesOf(parseTargetPolicy({}), new Set()) });
    await open.start();
    try {
      const down = await freePort();
      const s = connect(open.port, '127.0.0.1');
      const answer = await new Promise<string>((resolve) => {
        s.on('data', (d: Buffer) => resolve(d.toString('latin1')));
        s.write(`CONNECT 127.0.0.1:${down} HTTP/1.1\r\n\r\n`);
      });
      s.destroy();
      expect(answer).toMatch(/^HTTP\/1\.1 502 /);
      expect(answer.toLowerCase()).toContain(
        `${EGRESS_ERROR_HEADER}: 127.0.0.1:${down} could not be reached (econnrefused)`,
      );
      expect(open.recentFailure('127.0.0.1', down)).toEqual({
        refused: false,
        reason: `127.0.0.1:${down} could not be reached (ECONNREFUSED)`,
      });
      expect(open.refused).toBe(0);
    } finally {
      await open.close();
    }
  });
});

describe('the runner as `sfw runner` wires it', () => {
  it('applies ALLOWED_TARGETS to a flow and to a code session on its browser', async () => {
    const api = await startTestApi('egress');
    const started = await startRunner(
      loadConfig(RUNNER_CONFIG_KEYS, {
        env: {
          API_BASE_URL: api.url,
          RUNNER_ID: 'egress-runner',
          ALLOWED_TARGETS: `127.0.0.1:${allowed.port}`,
          SESSIONS_DIR: fileURLToPath(new URL('../fixtures/egress/sessions/', import.meta.url)),
          POLL_INTERVAL_MS: '500',
          HEARTBEAT_INTERVAL_MS: '300',
        },
      }),
      { log: silentLog, fixedPollInterval: true },
    );
    try {
      const secret = `http://${blockedTarget()}/secret`;
      const flowSession = await api.client.createSession({
        type: 'flow',
        input: {
          steps: [{ action: 'goto', url: `${allowed.url}/redirect?to=${encodeURIComponent(secret)}` }],
        },
      });
      const code = await api.client.createSession({
        type: 'egress-probe',
        input: { page: page('fetch.html', secret), blocked: secret },
      });
      const flowDone = await api.client.waitUntilDone(flowSession.id, { timeoutMs: 30_000 });
      expect(flowDone.status).toBe('failed');
      expect(flowDone.errorMessage).toMatch(refusedByList());
      const codeDone = await api.client.waitUntilDone(code.id, { timeoutMs: 30_000 });
      expect(codeDone.status).toBe('succeeded');
      expect(codeDone.result).toEqual({
        fetched: 'fetch failed: TypeError: Failed to fetch',
        gotoStatus: 403,
      });
      expect(blocked.tcp).toBe(0);
    } finally {
      expect(await started.stop()).toBe(0);
      await api.stop();
    }
  });
});

/** Whether this machine lets us make a network namespace with 169.254.169.254 on its loopback. */
function netnsProblem(): string | undefined {
  const r = spawnSync(
    'unshare',
    ['--net', '--mount', 'sh', '-c', NETNS_SETUP.replace(' && mount --bind "$0" /etc/hosts', '')],
    {
      encoding: 'utf8',
    },
  );
  if (r.error) return `unshare is not available (${r.error.message})`;
  return r.status === 0 ? undefined : `no network namespace here: ${(r.stderr || `exit ${r.status}`).trim()}`;
}
const NETNS_SETUP =
  'ip link set lo up && ip addr add 169.254.169.254/32 dev lo && mount --bind "$0" /etc/hosts';
const netns = netnsProblem();

describe('a fake cloud-metadata server on 169.254.169.254, in a network namespace', () => {
  it.skipIf(netns !== undefined)(
    `no flow reads its credentials: not by address, by a name resolving to it, a redirect or fetch()${netns ? ` (skipped: ${netns})` : ''}`,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sfw-netns-'));
      try {
        const hosts = join(dir, 'hosts');
        await writeFile(hosts, '127.0.0.1 localhost\n169.254.169.254 metadata.rebind.test\n');
        const child = fileURLToPath(new URL('../fixtures/egress/metadata-child.ts', import.meta.url));
        const stdout = await new Promise<string>((resolve, reject) =>
          execFile(
            'unshare',
            [
              '--net',
              '--mount',
              'sh',
              '-c',
              `${NETNS_SETUP} && exec "$@"`,
              hosts,
              process.execPath,
              '--import',
              'tsx',
              child,
              'proxy',
            ],
            { timeout: 60_000 },
            (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)),
          ),
        );
        const run = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as {
          direct: string;
          directRequests: number;
          metadataRequests: number;
          results: Record<string, { extracted?: Record<string, string>; error?: string }>;
        };
        // The endpoint is there and answers a client that does not use the proxy.
        expect(run.direct).toContain('ASIA-SFW-FAKE-SECRET');
        expect(run.directRequests).toBe(1);
        // Through the runner's browser: nothing reached it, and each flow says why.
        expect(run.metadataRequests).toBe(0);
        expect(JSON.stringify(run.results)).not.toContain('ASIA-SFW-FAKE-SECRET');
        expect(run.results.address?.error).toMatch(
          /navigation refused: 169\.254\.169\.254 is a link-local or cloud-metadata address/,
        );
        for (const name of ['rebindingName', 'redirect'])
          expect(run.results[name]?.error, name).toMatch(
            /refused: metadata\.rebind\.test resolves to 169\.254\.169\.254, a link-local or cloud-metadata address; set ALLOW_PRIVATE_TARGETS=true/,
          );
        expect(run.results.fetch?.extracted?.body).toMatch(/^fetch failed/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
