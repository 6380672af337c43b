import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrowserPool } from '../../src/browser/pool.js';
import { executeSession } from '../../src/sessions/execute.js';
import { flowSessionType } from '../../src/sessions/registry.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { startRunner, type InProcessRunner } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Per-key limits end to end: real runners run flows in Chromium against two local sites, each counting
 * the requests it is serving at once (each held 300 ms). One site's key is limited to 2; the other's is not.
 */

interface CountingSite {
  url: string;
  key: string;
  now: number;
  most: number;
  served: number;
  close(): Promise<void>;
}

/** `busyFirst`: the first request is answered 429 with Retry-After of that many seconds. */
async function countingSite(opts: { busyFirst?: number } = {}): Promise<CountingSite> {
  const site = { now: 0, most: 0, served: 0 } as CountingSite;
  let busy = opts.busyFirst;
  const server: Server = createServer((req, res) => {
    if (!req.url?.startsWith('/slow')) {
      res.writeHead(404).end();
      return;
    }
    if (busy !== undefined) {
      res.writeHead(429, { 'retry-after': String(busy), 'content-type': 'text/html' }).end('<h1>busy</h1>');
      busy = undefined;
      return;
    }
    site.now++;
    site.most = Math.max(site.most, site.now);
    setTimeout(() => {
      site.now--;
      site.served++;
      res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>slow</h1>');
    }, 300);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  site.url = `http://127.0.0.1:${port}`;
  site.key = `127.0.0.1:${port}`;
  site.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return site;
}

let api: TestApi;
let pool: BrowserPool;
let limited: CountingSite;
let free: CountingSite;
const runners: InProcessRunner[] = [];

beforeAll(async () => {
  const executablePath = await requireChromium();
  api = await startTestApi('limits-run');
  limited = await countingSite();
  free = await countingSite();
  pool = new BrowserPool({ executablePath });
  await pool.start();
  const flow = flowSessionType();
  for (const runnerId of ['limits-runner-1', 'limits-runner-2'])
    runners.push(
      await startRunner(api, {
        runnerId,
        maxConcurrency: 6,
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
            ...(ctx.backoff ? { backoff: ctx.backoff } : {}),
          }),
      }),
    );
}, 60_000);

afterAll(async () => {
  for (const r of runners) await r.stop();
  await pool?.close();
  await limited?.close();
  await free?.close();
  await api?.stop();
});

const flowTo = (site: CountingSite) => ({
  type: 'flow',
  input: {
    steps: [
      // The site counts the visit; a generous timeout, as twelve pages at once on a loaded 2-core machine
      // take their time (an assert on the page's text failed there now and then, and proves nothing here).
      { action: 'goto', url: `${site.url}/slow`, timeoutMs: 45_000 },
    ],
  },
  artifacts: { screenshot: 'off' as const },
});

describe('a limited key on real runners', () => {
  it('never has more than `concurrency` sessions at the site at once, fleet-wide, while another key runs at full speed', async () => {
    await api.client.putLimit(limited.key, { concurrency: 2 });
    // The limited site's sessions first: FIFO would give them every slot if the claim waited on them.
    const { items: a } = await api.client.createSessions(Array.from({ length: 12 }, () => flowTo(limited)));
    const { items: b } = await api.client.createSessions(Array.from({ length: 12 }, () => flowTo(free)));
    expect(a.every((s) => s.concurrencyKey === limited.key)).toBe(true);

    const waitingSeen: number[] = [];
    await waitFor(
      async () => {
        waitingSeen.push((await api.client.getLimit(limited.key)).waiting);
        return free.served === 12;
      },
      { what: "the free site's 12 sessions", timeoutMs: 60_000, intervalMs: 50 },
    );
    // By then most of the limited site's sessions are still to run: they did not hold the slots.
    expect(limited.served).toBeLessThanOrEqual(8);
    expect(Math.max(...waitingSeen)).toBeGreaterThan(0);
    const done = await Promise.all(
      [...a, ...b].map((s) => api.client.waitUntilDone(s.id, { timeoutMs: 60_000 })),
    );
    const failures = done.filter((s) => s.status !== 'succeeded').map((s) => s.errorMessage);
    expect(
      done.map((s) => s.status),
      JSON.stringify(failures),
    ).toEqual(Array.from({ length: 24 }, () => 'succeeded'));
    expect(limited.served).toBe(12);
    expect(limited.most).toBeGreaterThanOrEqual(1);
    expect(limited.most).toBeLessThanOrEqual(2);
    // The limit was used, not just kept: two of the key's sessions ran at once (by their own times).
    const events = done
      .filter((s) => s.concurrencyKey === limited.key)
      .flatMap((s) => [
        { t: Date.parse(s.claimedAt!), d: 1 },
        { t: Date.parse(s.finishedAt!), d: -1 },
      ])
      .sort((x, y) => x.t - y.t || x.d - y.d);
    let now = 0;
    let peak = 0;
    for (const e of events) peak = Math.max(peak, (now += e.d));
    expect(peak).toBe(2);
    // The free site had more than the limit at once: 12 slots, 2 of them on the limited key at most.
    expect(free.most).toBeGreaterThan(2);
    const after = await api.client.getLimit(limited.key);
    expect(after).toMatchObject({ running: 0, waiting: 0 });
  }, 120_000);
});

describe("a site's Retry-After on real runners", () => {
  it('claims no session of its key until then, and says so in the limit and /metrics', async () => {
    const site = await countingSite({ busyFirst: 2 });
    try {
      // The first session meets 429 with Retry-After: 2.
      const first = await api.client.createSession(flowTo(site));
      const limit = await waitFor(
        async () => {
          const l = await api.client.getLimit(site.key).catch(() => undefined);
          return l?.backoffUntil ? l : false;
        },
        { what: 'the backoff reported by the runner', timeoutMs: 30_000, intervalMs: 50 },
      );
      expect(limit).toMatchObject({ concurrency: null, perMinute: null });
      const until = Date.parse(limit.backoffUntil!);
      expect(until - Date.now()).toBeGreaterThan(500);
      const metrics = await api.client.metrics();
      const line = metrics
        .split('\n')
        .find((l) => l.startsWith(`sfw_limit_backoff_seconds{key="${site.key}"}`));
      expect(Number(line?.split(' ')[1])).toBeGreaterThan(0);
      // Sessions of the key enqueued now wait for the time, then run (the site answers 200 from now on).
      const { items } = await api.client.createSessions(Array.from({ length: 3 }, () => flowTo(site)));
      const done = await Promise.all(items.map((s) => api.client.waitUntilDone(s.id, { timeoutMs: 60_000 })));
      expect(done.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
      for (const s of done) expect(Date.parse(s.claimedAt!)).toBeGreaterThanOrEqual(until);
      expect((await api.client.waitUntilDone(first.id, { timeoutMs: 30_000 })).status).not.toBe('running');
    } finally {
      await site.close();
    }
  }, 120_000);
});
