import { chromium, type Browser } from 'playwright-core';
import { launchBrowserServer } from '../../src/browser/server.js';
import { startApiProcess, startRunnerProcess } from '../lib/env.js';
import { startFixtureServer } from '../lib/fixture-server.js';
import { size, type BenchContext } from '../lib/context.js';
import { chromiumPath, type PartResult, type Row } from '../lib/report.js';
import { ratio, round } from '../lib/stats.js';

/**
 * Remote browsers: the same loop (connect, then N pages: goto a local page, read its title) through
 * GET /v1/browser (queue, runner, relay) and against a local Playwright server with no relay, in one run.
 * Time to first page: connect → first page's text. Pages/s over the loop. The relay's added latency per
 * command: a round trip that does nothing in the browser (page.evaluate('1')), median of many, remote
 * minus local.
 */

interface Figures {
  firstPageMs: number;
  pagesPerSecond: number;
  commandMs: number;
}

async function loop(connect: () => Promise<Browser>, base: string, pages: number, commands: number) {
  const t0 = performance.now();
  const browser = await connect();
  const page = await browser.newPage();
  await page.goto(`${base}/list.html`);
  await page.title();
  const firstPageMs = performance.now() - t0;
  const t1 = performance.now();
  for (let i = 0; i < pages; i++) {
    await page.goto(`${base}/list.html?i=${i}`);
    await page.title();
  }
  const pagesPerSecond = pages / ((performance.now() - t1) / 1000);
  const lat: number[] = [];
  for (let i = 0; i < commands; i++) {
    const c0 = performance.now();
    await page.evaluate('1');
    lat.push(performance.now() - c0);
  }
  lat.sort((a, b) => a - b);
  await browser.close();
  return { firstPageMs, pagesPerSecond, commandMs: lat[Math.floor(lat.length / 2)] ?? 0 } satisfies Figures;
}

export async function runRemote(ctx: BenchContext): Promise<PartResult> {
  const pages = size(ctx, 100, 5);
  const commands = size(ctx, 500, 20);
  const rounds = ctx.smoke ? 1 : 3;
  const site = await startFixtureServer();
  const { url } = await ctx.pg.sessionsDatabase('remote');
  const api = await startApiProcess(url, {});
  const runner = startRunnerProcess({
    apiUrl: api.url,
    runnerId: 'remote',
    maxConcurrency: 1,
    pollIntervalMs: 1000,
    env: { ALLOW_PRIVATE_TARGETS: 'true' },
  });
  const remote: Figures[] = [];
  const local: Figures[] = [];
  try {
    const ws = `${api.url.replace('http', 'ws')}/v1/browser`;
    for (let r = 0; r < rounds; r++) {
      remote.push(await loop(() => chromium.connect(ws, { timeout: 120_000 }), site.url, pages, commands));
      const server = await launchBrowserServer({ executablePath: chromiumPath() });
      try {
        local.push(await loop(() => chromium.connect(server.wsEndpoint), site.url, pages, commands));
      } finally {
        await server.close();
      }
    }
  } finally {
    await runner.stop(10_000);
    await api.stop();
    await site.close();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const pick = (fs: Figures[], k: keyof Figures) => median(fs.map((f) => f[k]));
  const rows: Row[] = [
    { variant: 'local (launchServer, no relay)', ...summary(local) },
    { variant: 'remote (/v1/browser: queue, runner, relay)', ...summary(remote) },
  ];
  function summary(fs: Figures[]): Row {
    return {
      firstPageMs: round(pick(fs, 'firstPageMs'), 0),
      pagesPerSecond: round(pick(fs, 'pagesPerSecond'), 1),
      commandMs: round(pick(fs, 'commandMs'), 2),
    };
  }
  return {
    part: 'remote',
    rows,
    ratios: {
      firstPageRemoteOverLocal: ratio(pick(remote, 'firstPageMs'), pick(local, 'firstPageMs')),
      pagesPerSecondRemoteOverLocal: ratio(pick(remote, 'pagesPerSecond'), pick(local, 'pagesPerSecond')),
      relayAddedMsPerCommand: round(pick(remote, 'commandMs') - pick(local, 'commandMs'), 2),
    },
    notes: [
      `${rounds} round(s), each: connect, ${pages} pages (goto a local page, read its title), ${commands} page.evaluate('1') round trips; medians over rounds`,
      'remote includes the queue and a fresh Chromium per session on the runner (launchServer), local connects to a Chromium already started',
      'one sfw api and one sfw runner (MAX_CONCURRENCY=1) on this machine: the relay adds two local WebSocket hops',
    ],
    details: { remote, local },
  };
}
