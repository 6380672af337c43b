import { chromium, type Browser } from 'playwright-core';
import { SfwClient } from '@session-framework/sdk';
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
  /** Live frames a viewer received during the loop (the watched variant). */
  frames?: number;
}

/** Runs once the first page is shown (a viewer starts watching); answers what to add to the figures. */
type OnFirstPage = () => Promise<() => Promise<Partial<Figures>>>;

async function loop(
  connect: () => Promise<Browser>,
  base: string,
  pages: number,
  commands: number,
  onFirstPage?: OnFirstPage,
) {
  const t0 = performance.now();
  const browser = await connect();
  const page = await browser.newPage();
  await page.goto(`${base}/list.html`);
  await page.title();
  const firstPageMs = performance.now() - t0;
  const after = await onFirstPage?.();
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
  const extra = (await after?.()) ?? {};
  await browser.close();
  return {
    firstPageMs,
    pagesPerSecond,
    commandMs: lat[Math.floor(lat.length / 2)] ?? 0,
    ...extra,
  } satisfies Figures;
}

/**
 * A viewer of the running remote session's live view for the rest of the loop: it waits for the first
 * frame (the runner hears of the viewer with its next heartbeat), then counts frames until the loop ends.
 */
function watching(client: SfwClient): OnFirstPage {
  return async () => {
    const { items } = await client.listSessions({ type: 'browser', status: 'running', fields: [] });
    const id = items[0]?.id;
    if (!id) throw new Error('no running browser session to watch');
    const ac = new AbortController();
    let frames = 0;
    let first!: () => void;
    const firstFrame = new Promise<void>((r) => (first = r));
    const reading = (async () => {
      for await (const e of client.watchLive(id, ac.signal)) {
        if (e.type !== 'frame') continue;
        frames++;
        first();
      }
    })().catch((err: unknown) => {
      // Stopping the viewer aborts its request; anything else fails the part.
      if (!ac.signal.aborted) throw err;
    });
    await Promise.race([firstFrame, reading, new Promise((r) => setTimeout(r, 30_000))]);
    if (frames === 0) throw new Error('the live view sent no frame within 30 s');
    const counted = frames;
    return async () => {
      ac.abort();
      await reading;
      return { frames: frames - counted };
    };
  };
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
  const watched: Figures[] = [];
  const local: Figures[] = [];
  const client = new SfwClient({ baseUrl: api.url, retries: 0 });
  try {
    const ws = `${api.url.replace('http', 'ws')}/v1/browser`;
    const remoteConnect = () => chromium.connect(ws, { timeout: 120_000 });
    for (let r = 0; r < rounds; r++) {
      remote.push(await loop(remoteConnect, site.url, pages, commands));
      watched.push(await loop(remoteConnect, site.url, pages, commands, watching(client)));
      const server = await launchBrowserServer({ executablePath: chromiumPath() });
      try {
        local.push(await loop(() => chromium.connect(server.wsEndpoint), site.url, pages, commands));
      } finally {
        await server.close();
      }
    }
  } finally {
    await client.close();
    await runner.stop(10_000);
    await api.stop();
    await site.close();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const pick = (fs: Figures[], k: keyof Figures) => median(fs.map((f) => f[k] ?? 0));
  const rows: Row[] = [
    { variant: 'local (launchServer, no relay)', ...summary(local) },
    { variant: 'remote (/v1/browser: queue, runner, relay)', ...summary(remote) },
    {
      variant: 'remote, watched live by one viewer',
      ...summary(watched),
      liveFramesPerSecond: round(
        median(
          watched.map(
            (f) => (f.frames ?? 0) / (pages / f.pagesPerSecond + (commands * f.commandMs) / 1000 || 1),
          ),
        ),
        1,
      ),
    },
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
      pagesPerSecondWatchedOverRemote: ratio(pick(watched, 'pagesPerSecond'), pick(remote, 'pagesPerSecond')),
    },
    notes: [
      `${rounds} round(s), each: connect, ${pages} pages (goto a local page, read its title), ${commands} page.evaluate('1') round trips; medians over rounds`,
      'remote includes the queue and a fresh Chromium per session on the runner (launchServer), local connects to a Chromium already started',
      'one sfw api and one sfw runner (MAX_CONCURRENCY=1) on this machine: the relay adds two local WebSocket hops',
      "watched: the same remote loop while one viewer reads GET /v1/sessions/:id/live (SSE, from the first frame on); liveFramesPerSecond is frames over the loop's pages and commands",
    ],
    details: { remote, watched, local },
  };
}
