import type { FlowStep } from '../../src/protocol/flow.js';
import { startApiProcess, startRunnerProcess, until } from '../lib/env.js';
import { startFixtureServer } from '../lib/fixture-server.js';
import { chromiumPss, descendants, isChromium, MB, rssBytes } from '../lib/procs.js';
import type { BenchContext } from '../lib/context.js';
import type { PartResult, Row } from '../lib/report.js';
import { round } from '../lib/stats.js';

/**
 * Part 4, memory: Chromium PSS (smaps_rollup summed over the runner's Chromium processes) and runner RSS
 * while C sessions hold the simple page open, at C = 1, 2, 4, 8; and the runner's own RSS with no browser.
 */

const HOLD_MS = 4000;

function holdFlow(base: string): FlowStep[] {
  return [
    { action: 'goto', url: `${base}/list.html` },
    { action: 'fill', selector: '#q', value: 'bench' },
    { action: 'click', selector: '#go' },
    { action: 'extract', selector: '.item', as: 'items', all: true },
    { action: 'waitFor', ms: HOLD_MS },
  ] as FlowStep[];
}

export async function runMemory(ctx: BenchContext): Promise<PartResult> {
  const levels = ctx.smoke ? [1] : [1, 2, 4, 8];
  const server = await startFixtureServer();
  const { url, db } = await ctx.pg.sessionsDatabase('memory');
  await db.end();
  const api = await startApiProcess(url);
  const rows: Row[] = [];
  const notes: string[] = [];
  let idleRss = 0;
  let idleHadBrowser = false;
  try {
    for (const c of levels) {
      const runner = startRunnerProcess({ apiUrl: api.url, runnerId: `memory-c${c}`, maxConcurrency: c });
      try {
        await until(
          async () => (await api.client.runners()).some((r) => r.runnerId === `memory-c${c}`),
          'runner registered',
          60_000,
          100,
          () => runner.output().slice(-2000),
        );
        if (c === levels[0]) {
          // Idle, before its first browser session.
          await new Promise((r) => setTimeout(r, 1000));
          idleRss = rssBytes(runner.pid);
          idleHadBrowser = descendants(runner.pid).some(isChromium);
        }
        const before = server.requests;
        // Warm-up round so Chromium is launched, then the measured round.
        let idlePss = 0;
        for (const round_ of ['warm-up', 'measured']) {
          if (round_ === 'measured') {
            // Chromium after the warm-up, with no session open: what the browser costs before any page.
            await new Promise((r) => setTimeout(r, 500));
            idlePss = chromiumPss(runner.pid).bytes;
          }
          const seen = server.requests;
          const { items } = await api.client.createSessions(
            Array.from({ length: c }, () => ({ type: 'flow', input: { steps: holdFlow(server.url) } })),
          );
          await until(
            () => server.requests - seen >= c,
            `${c} pages loaded (${round_})`,
            60_000,
            20,
            () => runner.output().slice(-2000),
          );
          if (round_ === 'measured') {
            // The pages are loaded and held for HOLD_MS: let rendering settle, then sample.
            await new Promise((r) => setTimeout(r, 800));
            const chrome = chromiumPss(runner.pid);
            const rss = rssBytes(runner.pid);
            rows.push({
              concurrency: c,
              'chromium processes': chrome.processes,
              'chromium PSS MB': round(chrome.bytes / MB, 1),
              'chromium PSS MB / session': round(chrome.bytes / MB / c, 1),
              'chromium idle PSS MB': round(idlePss / MB, 1),
              'marginal PSS MB / session': round((chrome.bytes - idlePss) / MB / c, 1),
              'runner RSS MB': round(rss / MB, 1),
              'runner RSS MB / session': round(rss / MB / c, 1),
            });
          }
          for (const s of items) await api.client.waitUntilDone(s.id, { timeoutMs: 60_000 });
        }
        if (server.requests - before < 2 * c) notes.push(`concurrency ${c}: fewer page loads than sessions`);
      } finally {
        await runner.stop();
      }
    }
  } finally {
    await api.stop();
    await server.close();
  }
  rows.push({
    concurrency: 0,
    'runner RSS MB': round(idleRss / MB, 1),
  });
  notes.push(
    `concurrency 0: the runner's own node process, idle before its first session (${idleHadBrowser ? 'Chromium already launched, counted apart' : 'no Chromium process yet'}); runner RSS never includes Chromium`,
    'marginal PSS: (PSS with C pages open − PSS of the same browser with none) / C',
    `sampled ${800} ms after the C-th page load while every session holds its page (waitFor ${HOLD_MS} ms); PSS shares Chromium's common pages fairly among its processes`,
    'the page is a small local form with 50 list items: real sites cost more',
  );
  const last = rows.find((r) => r.concurrency === levels[levels.length - 1]);
  return {
    part: 'memory',
    rows,
    ratios: {
      'chromium PSS MB per session at the highest concurrency': Number(
        last?.['chromium PSS MB / session'] ?? Number.NaN,
      ),
      'marginal chromium PSS MB per session at the highest concurrency': Number(
        last?.['marginal PSS MB / session'] ?? Number.NaN,
      ),
    },
    notes,
  };
}
