import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { API_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { killAll, killTagged, spawnBrowserRunner, type SfwProcess } from '../helpers/runner.js';
import { upgradeAnswer } from '../helpers/upgrade.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Remote browsers through the queue: playwright-core's own chromium.connect() against GET /v1/browser, a
 * real API, real runners as `sfw runner` processes (MAX_CONCURRENCY=2) and real Chromium against the
 * fixture site. Each connection is a session of type `browser`.
 */

let api: TestApi;
let site: FixtureServer;
let chromiumPath: string;
const procs: SfwProcess[] = [];

function startRunnerProcess(runnerId: string): SfwProcess {
  const p = spawnBrowserRunner(api.url, runnerId, chromiumPath);
  procs.push(p);
  return p;
}

async function runnerLive(runnerId: string, proc: SfwProcess): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await api.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM runner_health WHERE runner_id = $1 AND status = 'running'`,
        [runnerId],
      );
      return rows[0]!.n === 1;
    },
    { timeoutMs: 60_000, what: `runner ${runnerId} registered` },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${proc.output().slice(-3000)}`);
  });
}

/** chromium.connect, its failure naming what the runners said. */
async function connect(url: string): Promise<Browser> {
  return chromium.connect(url, { timeout: 60_000 }).catch((err: unknown) => {
    const said = procs.map((p) => p.output().slice(-3000)).join('\n---\n');
    throw new Error(`${(err as Error).message}\n${said}`);
  });
}

const endpoint = (extra = '') => `${api.url.replace('http', 'ws')}/v1/browser?token=${API_TOKEN}${extra}`;

/** Sessions of type browser made since `skip` of them were (each test reads its own). */
async function browserSessions(
  skip = 0,
): Promise<
  { id: string; status: string; result: unknown; error_message: string | null; ms: number | null }[]
> {
  const { rows } = await api.db.query<{
    id: string;
    status: string;
    result: unknown;
    error_message: string | null;
    ms: number | null;
  }>(
    `SELECT id, status, result, error_message,
            (extract(epoch FROM finished_at - claimed_at) * 1000)::int AS ms
     FROM sessions WHERE type = 'browser' ORDER BY created_at`,
  );
  return rows.slice(skip);
}

beforeAll(async () => {
  chromiumPath = await requireChromium();
  site = await startFixtureServer();
  api = await startTestApi('remote-browser', { auth: true, staleSessionTimeoutMs: 5000 });
}, 60_000);

afterAll(async () => {
  await killAll(procs);
  await api?.stop();
  await site?.close();
});

describe('GET /v1/browser', () => {
  it('answers a bad token 401 before any upgrade', async () => {
    const answer = await upgradeAnswer(`${api.url}/v1/browser?token=wrong`);
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    // chromium.connect itself fails with the answer, not a hang.
    await expect(
      chromium.connect(endpoint().replace(API_TOKEN, 'wrong'), { timeout: 10_000 }),
    ).rejects.toThrow(/401/);
    expect(await browserSessions()).toEqual([]);
  });

  it('refuses another Playwright minor version and bad query values with 400', async () => {
    await expect(
      chromium.connect(endpoint(), {
        timeout: 10_000,
        headers: { 'User-Agent': 'Playwright/1.40.0 (x64; test)' },
      }),
    ).rejects.toThrow(/400[\s\S]*Playwright 1\.40 cannot drive/);
    await expect(chromium.connect(endpoint('&priority=high'), { timeout: 10_000 })).rejects.toThrow(
      /query\.priority/,
    );
    expect(await browserSessions()).toEqual([]);
  });

  it('runs a connection as a browser session: new page, a fixture page, its text, close → succeeded', async () => {
    await runnerLive('remote-runner-1', startRunnerProcess('remote-runner-1'));
    const browser = await connect(endpoint('&priority=5'));
    const [running] = await browserSessions();
    expect(running?.status).toBe('running');
    const page = await browser.newPage();
    await page.goto(`${site.url}/pages/simple.html`);
    expect(await page.textContent('#text')).toBe('A simple page.');
    await browser.close();
    const [done] = await waitFor(
      async () => {
        const rows = await browserSessions();
        return rows[0]?.status !== 'running' && rows;
      },
      { timeoutMs: 20_000, what: 'the session ended' },
    );
    expect(done).toMatchObject({ status: 'succeeded', error_message: null });
    const relay = (done!.result as { relay: Record<string, number> }).relay;
    expect(relay.bytesFromClient).toBeGreaterThan(0);
    expect(relay.bytesToClient).toBeGreaterThan(relay.bytesFromClient!);
    expect(relay.messagesFromClient).toBeGreaterThan(3);
    expect(done!.ms ?? 0).toBeGreaterThan(0);
  }, 90_000);

  it('holds a third connection queued while two run on a runner of MAX_CONCURRENCY=2', async () => {
    const skip = (await browserSessions()).length;
    const first = await connect(endpoint());
    const second = await connect(endpoint());
    let thirdAt = 0;
    const third = connect(endpoint()).then((b) => {
      thirdAt = Date.now();
      return b;
    });
    await waitFor(async () => (await browserSessions(skip)).length === 3, { what: 'three sessions' });
    // The third waits in the queue: its connect has not resolved while both slots are held.
    await new Promise((r) => setTimeout(r, 3000));
    expect((await browserSessions(skip)).map((s) => s.status)).toEqual(['running', 'running', 'queued']);
    expect(thirdAt).toBe(0);
    const closedAt = Date.now();
    await first.close();
    const b3 = await third;
    expect(thirdAt).toBeGreaterThanOrEqual(closedAt);
    const page = await b3.newPage();
    await page.goto(`${site.url}/pages/simple.html`);
    expect(await page.title()).toBe('Simple fixture');
    await b3.close();
    await second.close();
    await waitFor(async () => (await browserSessions(skip)).every((s) => s.status === 'succeeded'), {
      timeoutMs: 20_000,
      what: 'all three succeeded',
    });
  }, 120_000);

  it('cancels a session whose client gives up while queued, and closes a cancelled one', async () => {
    const skip = (await browserSessions()).length;
    const a = await connect(endpoint());
    const b = await connect(endpoint());
    // Both slots held: this one waits, and its client's own timeout ends the wait.
    await expect(chromium.connect(endpoint(), { timeout: 2000 })).rejects.toThrow(/Timeout 2000ms/);
    const gaveUp = await waitFor(
      async () => {
        const s = (await browserSessions(skip))[2];
        return s?.status === 'cancelled' && s;
      },
      { timeoutMs: 10_000, what: 'the left session cancelled' },
    );
    expect(gaveUp.error_message).toBe('Cancelled while queued');
    const [running] = await browserSessions(skip);
    const disconnected = new Promise<void>((resolve) => a.once('disconnected', () => resolve()));
    await api.client.cancelSession(running!.id);
    await disconnected;
    await waitFor(async () => (await browserSessions(skip))[0]?.status === 'cancelled', {
      timeoutMs: 20_000,
      what: 'the running session cancelled',
    });
    await b.close();
  }, 90_000);

  it('lets a draining runner finish a connection before it stops', async () => {
    const skip = (await browserSessions()).length;
    const browser = await connect(endpoint());
    const runner = procs[0]!;
    runner.child.kill('SIGTERM');
    await waitFor(
      async () => {
        const { rows } = await api.db.query<{ status: string }>(
          `SELECT status FROM runner_health WHERE runner_id = 'remote-runner-1'`,
        );
        return rows[0]?.status === 'draining';
      },
      { what: 'the runner draining' },
    );
    const page = await browser.newPage();
    await page.goto(`${site.url}/pages/simple.html`);
    expect(await page.textContent('#text')).toBe('A simple page.');
    expect(runner.child.exitCode).toBe(null);
    await browser.close();
    expect(await runner.exited).toBe(0);
    expect((await browserSessions(skip)).map((s) => s.status)).toEqual(['succeeded']);
  }, 90_000);

  it('closes the client when its runner is killed, and the session ends error', async () => {
    const skip = (await browserSessions()).length;
    for (const p of procs.splice(0)) {
      p.child.kill('SIGTERM');
      await p.exited;
      await killTagged(p.tag);
    }
    const doomed = startRunnerProcess('remote-runner-2');
    await runnerLive('remote-runner-2', doomed);
    const browser: Browser = await connect(endpoint());
    const page = await browser.newPage();
    await page.goto(`${site.url}/pages/simple.html`);
    const disconnected = new Promise<void>((resolve) => browser.once('disconnected', () => resolve()));
    doomed.child.kill('SIGKILL');
    await disconnected;
    expect(browser.isConnected()).toBe(false);
    const [s] = await waitFor(
      async () => {
        const rows = await browserSessions(skip);
        return rows[0]?.status === 'error' && rows;
      },
      { timeoutMs: 20_000, what: 'the session ended error' },
    );
    expect(s!.error_message).toBe('Runner connection lost');
  }, 90_000);
});
