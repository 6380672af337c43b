import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { API_TOKEN, RUNNER_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { isJpeg, watchLive } from '../helpers/live.js';
import { killAll, spawnBrowserRunner, type SfwProcess } from '../helpers/runner.js';
import { sfwFromSources } from '../helpers/sfw-cli.js';
import { upgradeAnswer } from '../helpers/upgrade.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Live view with the real pieces: a real API, `sfw runner` processes with real Chromium, the fixture
 * site's ticker page (it repaints ten times a second), viewers over real HTTP. The runner captures
 * nothing until somebody watches, sends a few frames a second while they do, and stops when they leave.
 */

let api: TestApi;
let site: FixtureServer;
let chromiumPath: string;
const procs: SfwProcess[] = [];

function startRunner(apiUrl: string, runnerId: string): SfwProcess {
  const p = spawnBrowserRunner(apiUrl, runnerId, chromiumPath);
  procs.push(p);
  return p;
}

const said = () => procs.map((p) => p.output().slice(-3000)).join('\n---\n');

async function running(a: TestApi, id: string): Promise<void> {
  await waitFor(async () => (await a.client.getSession(id)).status === 'running', {
    timeoutMs: 60_000,
    what: `session ${id} running`,
  }).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${said()}`);
  });
}

/** A flow that opens the ticker and stays on it for `ms`. */
const tickerFlow = (ms: number) => ({
  type: 'flow',
  input: {
    steps: [
      { action: 'goto', url: `${site.url}/pages/ticker.html` },
      { action: 'waitFor', ms },
    ],
  },
  browser: { viewport: { width: 800, height: 600 } },
  timeoutMs: ms + 30_000,
});

beforeAll(async () => {
  chromiumPath = await requireChromium();
  site = await startFixtureServer();
  api = await startTestApi('live-view', { auth: true });
  startRunner(api.url, 'live-runner');
}, 60_000);

afterAll(async () => {
  await killAll(procs);
  await api?.stop();
  await site?.close();
});

describe('GET /v1/sessions/:id/live', () => {
  it("streams a flow session's page only while somebody watches, a few frames a second", async () => {
    const s = await api.client.createSession(tickerFlow(60_000));
    await running(api, s.id);
    // Running, watched by nobody: the runner has not dialled a live socket.
    await new Promise((r) => setTimeout(r, 1500));
    expect(api.app.live.sourceCount(s.id)).toBe(0);

    const view = watchLive(api.client, s.id);
    await waitFor(() => view.frames().length >= 3, { timeoutMs: 20_000, what: 'three frames' }).catch(
      (err: unknown) => {
        throw new Error(`${(err as Error).message}\n${JSON.stringify(view.events.slice(0, 5))}\n${said()}`);
      },
    );
    expect(view.events[0]).toMatchObject({ type: 'state', state: 'waiting' });
    expect(view.events.some((e) => e.type === 'state' && e.state === 'live')).toBe(true);
    const f = view.frames()[0]!;
    expect(isJpeg(f.jpeg)).toBe(true);
    expect(f).toMatchObject({ width: 800, height: 600 });
    expect(f.url).toBe(`${site.url}/pages/ticker.html`);
    expect(api.app.live.sourceCount(s.id)).toBe(1);
    const watching = await api.client.metrics();
    expect(watching).toMatch(/^sfw_live_viewers\{replica="[^"]+"\} 1$/m);
    expect(watching).toMatch(/^sfw_live_streams\{replica="[^"]+"\} 1$/m);

    // The page repaints ten times a second; at most three frames a second reach the viewer.
    const n0 = view.frames().length;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const perSecond = (view.frames().length - n0) / ((Date.now() - t0) / 1000);
    expect(view.frames().length).toBeGreaterThan(n0); // frames keep coming while the page repaints
    expect(perSecond).toBeLessThanOrEqual(3.5);

    // The viewer leaves: the API closes the runner's socket and the runner stops the screencast.
    view.close();
    await waitFor(() => api.app.live.sourceCount(s.id) === 0, {
      timeoutMs: 10_000,
      what: 'live socket closed',
    });
    await new Promise((r) => setTimeout(r, 2000));
    expect(api.app.live.sourceCount(s.id)).toBe(0);
    const left = await api.client.metrics();
    expect(left).toMatch(/^sfw_live_viewers\{replica="[^"]+"\} 0$/m);
    expect(left).toMatch(/^sfw_live_streams\{replica="[^"]+"\} 0$/m);
    await api.client.cancelSession(s.id);
  }, 90_000);

  it('sfw live prints a line a frame and saves the frames as JPEGs', async () => {
    const s = await api.client.createSession(tickerFlow(60_000));
    await running(api, s.id);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-live-'));
    const r = await sfwFromSources(api.url, [
      'live',
      s.id,
      '--out',
      dir,
      '--frames',
      '2',
      '--api-token',
      API_TOKEN,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('sfw live: waiting:');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /^frame 1 800×600 \S+ http:\/\/127\.0\.0\.1:\d+\/pages\/ticker\.html → .*frame-000001\.jpg$/,
    );
    expect((await readdir(dir)).sort()).toEqual(['frame-000001.jpg', 'frame-000002.jpg', 'latest.jpg']);
    expect(isJpeg(await readFile(path.join(dir, 'frame-000002.jpg')))).toBe(true);
    // A session that is over has nothing to show: the command says so.
    await api.client.cancelSession(s.id);
    await api.client.waitUntilDone(s.id, { timeoutMs: 30_000 });
    const over = await sfwFromSources(api.url, ['live', s.id, '--api-token', API_TOKEN]);
    expect(over.code).toBe(1);
    expect(over.stderr).toMatch(/only a queued or running session can be watched live/);
  }, 90_000);

  it('answers MJPEG by default and ends the stream when the session ends', async () => {
    const s = await api.client.createSession(tickerFlow(4000));
    await running(api, s.id);
    const res = await fetch(`${api.url}/v1/sessions/${s.id}/live`, {
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('multipart/x-mixed-replace; boundary=sfw-live-frame');
    const body = Buffer.from(await res.arrayBuffer()); // ends when the session does
    const text = body.toString('latin1');
    expect(text).toContain('--sfw-live-frame\r\nContent-Type: image/jpeg\r\nContent-Length: ');
    expect(text.endsWith('--sfw-live-frame--\r\n')).toBe(true);
    const part = text.indexOf('\r\n\r\n');
    expect(body[part + 4]).toBe(0xff);
    expect(body[part + 5]).toBe(0xd8);
    const done = await api.client.waitUntilDone(s.id, { timeoutMs: 30_000 });
    expect(done.status).toBe('succeeded');
    // Over: nothing left to watch.
    const after = await fetch(`${api.url}/v1/sessions/${s.id}/live`, {
      headers: { authorization: `Bearer ${API_TOKEN}` },
    });
    expect(after.status).toBe(409);
    expect(((await after.json()) as { error: { code: string } }).error.code).toBe('CONFLICT');
  }, 90_000);

  it("shows a remote browser session's page (the client's own context)", async () => {
    const browser = await chromium.connect(`${api.url.replace('http', 'ws')}/v1/browser?token=${API_TOKEN}`, {
      timeout: 60_000,
    });
    try {
      const page = await browser.newPage({ viewport: { width: 640, height: 480 } });
      await page.goto(`${site.url}/pages/ticker.html`);
      const { rows } = await api.db.query<{ id: string }>(
        `SELECT id FROM sessions WHERE type = 'browser' AND status = 'running'`,
      );
      expect(rows).toHaveLength(1);
      const view = watchLive(api.client, rows[0]!.id);
      await waitFor(() => view.frames().length >= 2, { timeoutMs: 20_000, what: 'frames' }).catch(
        (err: unknown) => {
          throw new Error(`${(err as Error).message}\n${JSON.stringify(view.events.slice(0, 5))}\n${said()}`);
        },
      );
      const f = view.frames().at(-1)!;
      expect(isJpeg(f.jpeg)).toBe(true);
      expect(f).toMatchObject({ width: 640, height: 480, url: `${site.url}/pages/ticker.html` });
      expect(await api.client.metrics()).toMatch(
        /^sfw_remote_clients\{replica="[^"]+",state="relayed"\} 1$/m,
      );
      // The client drives on, unaware of the viewer.
      expect(await page.textContent('#title')).toBe('Live ticker');
      await browser.close();
      await view.ended;
      expect(view.events.at(-1)).toMatchObject({ type: 'end' });
    } finally {
      await browser.close().catch(() => undefined);
    }
  }, 90_000);

  it('refuses what it cannot show, before streaming anything', async () => {
    const get = (path: string, token?: string) =>
      fetch(`${api.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    const unknown = '00000000-0000-4000-8000-000000000000';
    expect((await get(`/v1/sessions/${unknown}/live`, API_TOKEN)).status).toBe(404);
    expect((await get(`/v1/sessions/${unknown}/live`)).status).toBe(401);
    const bad = await get(`/v1/sessions/${unknown}/live?format=gif`, API_TOKEN);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { path?: string } }).error.path).toBe('query.format');
    // A runner's socket needs the claim's lease, checked before any upgrade.
    const s = await api.client.createSession({
      type: 'flow',
      input: { steps: [{ action: 'waitFor', ms: 1 }] },
      runAt: '2999-01-01T00:00:00Z',
    });
    const wsUrl = `${api.url}/v1/runners/r/sessions/${s.id}/live`;
    const auth = { authorization: `Bearer ${RUNNER_TOKEN}` };
    expect(await upgradeAnswer(wsUrl, auth)).toMatchObject({
      status: 400,
      body: { error: { path: 'headers.x-lease-token' } },
    });
    expect(await upgradeAnswer(wsUrl, { ...auth, 'x-lease-token': unknown })).toMatchObject({
      status: 409,
      body: { error: { code: 'LEASE_LOST' } },
    });
    expect(await upgradeAnswer(wsUrl, { 'x-lease-token': unknown })).toMatchObject({ status: 401 });
    await api.client.cancelSession(s.id);
  });
});

/** A free port on 127.0.0.1 (to give a replica its API_INTERNAL_URL before it listens). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('across API replicas (API_INTERNAL_URL)', () => {
  // Replica a has the viewers and the remote clients; the runner's sockets land on replica b.
  let a: TestApi;
  let b: TestApi;
  beforeAll(async () => {
    const port = await freePort();
    a = await startTestApi('live-replicas', {
      auth: true,
      port,
      deps: { internalUrl: `http://127.0.0.1:${port}` },
    });
    b = await startTestApi('live-replicas-b', { auth: true, db: { db: a.db, url: a.databaseUrl } });
    startRunner(b.url, 'live-runner-b');
  }, 60_000);
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
  });

  it('reaches a viewer on one replica from a runner whose socket lands on another', async () => {
    const s = await a.client.createSession(tickerFlow(60_000));
    await running(a, s.id);
    const view = watchLive(a.client, s.id);
    await waitFor(() => view.frames().length >= 2, { timeoutMs: 30_000, what: 'frames via replica b' }).catch(
      (err: unknown) => {
        throw new Error(`${(err as Error).message}\n${JSON.stringify(view.events.slice(0, 5))}\n${said()}`);
      },
    );
    expect(view.frames()[0]).toMatchObject({ width: 800, height: 600 });
    // The runner's socket is on b, forwarded to a.
    expect(b.app.live.sourceCount(s.id)).toBe(1);
    expect(a.app.live.sourceCount(s.id)).toBe(1);
    view.close();
    await waitFor(() => b.app.live.sourceCount(s.id) === 0, {
      timeoutMs: 20_000,
      what: "b's runner socket closed",
    });
    await a.client.cancelSession(s.id);
  }, 120_000);

  it("relays a remote browser whose client is on one replica and whose runner's relay lands on another", async () => {
    const browser = await chromium
      .connect(`${a.url.replace('http', 'ws')}/v1/browser?token=${API_TOKEN}`, {
        timeout: 60_000,
      })
      .catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\n${said()}`);
      });
    const page = await browser.newPage();
    await page.goto(`${site.url}/pages/ticker.html`);
    expect(await page.textContent('#title')).toBe('Live ticker');
    await browser.close();
    const { rows } = await a.db.query<{ id: string }>(`SELECT id FROM sessions WHERE type = 'browser'`);
    expect(rows).toHaveLength(1);
    const done = await a.client.waitUntilDone(rows[0]!.id, { timeoutMs: 30_000 });
    expect(done).toMatchObject({ status: 'succeeded', claimedBy: 'live-runner-b' });
    expect(
      (done.result as { relay: { messagesFromClient: number } }).relay.messagesFromClient,
    ).toBeGreaterThan(3);
  }, 120_000);

  it('fails a remote client at once, saying why, when its replica cannot be reached (no API_INTERNAL_URL)', async () => {
    const c = await startTestApi('live-replicas-c', { auth: true, db: { db: a.db, url: a.databaseUrl } });
    try {
      // At once: not the connect's own timeout.
      const err = await chromium
        .connect(`${c.url.replace('http', 'ws')}/v1/browser?token=${API_TOKEN}`, { timeout: 30_000 })
        .then(
          () => undefined,
          (e: unknown) => e as Error,
        );
      expect(err?.message).toMatch(
        /session error: relay refused \(404\): the client is on another API replica, which set no API_INTERNAL_URL/,
      );
    } finally {
      await c.stop();
    }
  }, 90_000);
});
