import { execFileSync } from 'node:child_process';
import { findChromium } from '../../src/browser/chromium.js';
import {
  findPackagedBuild,
  PACKAGED_CHROMIUM_PACKAGE,
  unpackPackagedChromium,
} from '../../src/browser/packaged.js';
import type { FlowStep } from '../../src/protocol/flow.js';
import { processingWindow } from '../lib/seed.js';
import { startApiProcess, startRunnerProcess, until, type BenchApi, type Proc } from '../lib/env.js';
import { startFixtureServer, type FixtureServer } from '../lib/fixture-server.js';
import { chromiumPss, MB } from '../lib/procs.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult, Row } from '../lib/report.js';
import { ratio, round } from '../lib/stats.js';
import { benchFlow, runAndWait } from './browser.js';

/**
 * Part `builds`, Chromium builds: the system's Chromium (Debian's package) against the packaged build from
 * npm (@sparticuz/chromium, a headless shell), both through the whole stack with the runner's own
 * flags. Per build and concurrency: flow throughput (the browser part's flow), then Chromium's PSS per
 * session while C sessions hold the page open. The builds take turns (A B, then B A) so a change in the
 * machine's load hits both alike.
 */

interface Build {
  key: 'system' | 'packaged';
  name: string;
  path: string;
  version: string;
}

async function builds(): Promise<[Build, Build]> {
  const system = await findChromium(undefined, {
    env: { PLAYWRIGHT_BROWSERS_PATH: '/nonexistent' },
    packaged: () => Promise.resolve(undefined),
  });
  if (!system) throw new Error('builds: no system Chromium to compare with (apt-get install -y chromium)');
  const packaged = findPackagedBuild();
  if (!packaged)
    throw new Error(`builds: ${PACKAGED_CHROMIUM_PACKAGE} is not installed (npm install, Linux x64)`);
  const unpacked = await unpackPackagedChromium(packaged);
  const version = (p: string) =>
    execFileSync(p, ['--version'], { timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  return [
    { key: 'system', name: 'system (Debian)', path: system.path, version: version(system.path) },
    {
      key: 'packaged',
      name: `packaged (${PACKAGED_CHROMIUM_PACKAGE} ${packaged.version})`,
      path: unpacked.path,
      version: unpacked.version,
    },
  ];
}

function holdFlow(base: string, ms: number): FlowStep[] {
  return [...benchFlow(base), { action: 'waitFor', ms }] as FlowStep[];
}

/** Flows through one runner on `build`: its rate, and (when asked) PSS while C sessions hold a page. */
async function measure(
  api: BenchApi,
  db: Parameters<typeof processingWindow>[0],
  server: FixtureServer,
  build: Build,
  c: number,
  n: number,
  /** Hold C sessions this long and sample PSS meanwhile (undefined: no sample). */
  holdMs: number | undefined,
): Promise<{ perSec: number; pss?: { bytes: number; idle: number; processes: number } }> {
  const runner: Proc = startRunnerProcess({
    apiUrl: api.url,
    runnerId: `builds-c${c}-${build.key}-${Date.now()}`,
    maxConcurrency: c,
    env: { CHROMIUM_PATH: build.path },
  });
  try {
    await runAndWait(
      api,
      runner,
      Array.from({ length: c }, () => benchFlow(server.url)),
      'warm-up flows',
    );
    const since = new Date();
    await runAndWait(
      api,
      runner,
      Array.from({ length: n }, () => benchFlow(server.url)),
      `${n} flows`,
    );
    const w = await processingWindow(db, 'flow', since);
    const perSec = n / (((w.lastFinishedAt?.getTime() ?? 0) - (w.firstClaimedAt?.getTime() ?? 0)) / 1000);
    if (holdMs === undefined) return { perSec };
    await new Promise((r) => setTimeout(r, 500));
    const idle = chromiumPss(runner.pid).bytes;
    const seen = server.requests;
    const { items } = await api.client.createSessions(
      Array.from({ length: c }, () => ({ type: 'flow', input: { steps: holdFlow(server.url, holdMs) } })),
    );
    await until(
      () => server.requests - seen >= c,
      `${c} pages loaded`,
      60_000,
      20,
      () => runner.output().slice(-2000),
    );
    await new Promise((r) => setTimeout(r, 800));
    const held = chromiumPss(runner.pid);
    for (const s of items) await api.client.waitUntilDone(s.id, { timeoutMs: 60_000 });
    return { perSec, pss: { bytes: held.bytes, idle, processes: held.processes } };
  } finally {
    await runner.stop();
  }
}

export async function runBuilds(ctx: BenchContext): Promise<PartResult> {
  const levels = ctx.smoke ? [1] : [1, 4];
  const holdMs = ctx.smoke ? 1500 : 4000;
  const [system, packaged] = await builds();
  const server = await startFixtureServer();
  const rows: Row[] = [];
  const ratios: Record<string, number> = {};
  try {
    for (const c of levels) {
      const half = size(ctx, 20 * c, 2 * c);
      const { url, db } = await ctx.pg.sessionsDatabase(`builds_c${c}`);
      const api = await startApiProcess(url);
      try {
        const seconds = new Map<Build, number>();
        const pss = new Map<Build, { bytes: number; idle: number; processes: number }>();
        // Smoke runs one round: the harness works, the figures mean nothing.
        const rounds = ctx.smoke
          ? [[system, packaged]]
          : [
              [system, packaged],
              [packaged, system],
            ];
        for (const [i, order] of rounds.entries()) {
          for (const build of order) {
            ctx.log(`builds: concurrency ${c}: ${build.name}, ${half} sessions (round ${i + 1})`);
            const m = await measure(
              api,
              db,
              server,
              build,
              c,
              half,
              i === rounds.length - 1 ? holdMs : undefined,
            );
            seconds.set(build, (seconds.get(build) ?? 0) + half / m.perSec);
            if (m.pss) pss.set(build, m.pss);
          }
        }
        for (const build of [system, packaged]) {
          const p = pss.get(build)!;
          rows.push({
            build: build.name,
            chromium: build.version,
            concurrency: c,
            n: rounds.length * half,
            'sessions/s': round((rounds.length * half) / seconds.get(build)!, 2),
            'chromium processes': p.processes,
            'PSS MB / session': round(p.bytes / MB / c, 1),
            'idle PSS MB': round(p.idle / MB, 1),
            'marginal PSS MB / session': round((p.bytes - p.idle) / MB / c, 1),
          });
        }
        const [a, b] = rows.slice(-2) as [Row, Row];
        ratios[`packaged / system sessions/s at concurrency ${c}`] = ratio(
          Number(b['sessions/s']),
          Number(a['sessions/s']),
        );
        ratios[`packaged / system PSS per session at concurrency ${c}`] = ratio(
          Number(b['PSS MB / session']),
          Number(a['PSS MB / session']),
        );
      } finally {
        await api.stop();
        await db.end();
      }
    }
  } finally {
    await server.close();
  }
  return {
    part: 'builds',
    rows,
    ratios,
    notes: [
      `system: ${system.version} at ${system.path}; packaged: ${packaged.version} at ${packaged.path}`,
      "flow: the browser part's (goto a local page, fill, click, extract 50 items), one fresh context per session; the runner's own flags for both builds (CHROMIUM_PATH set to each)",
      'each build runs two batches of n/2 (after a warm-up each), in the order A B then B A; sessions/s is over both batches, each timed from its first claim to its last finish',
      `PSS: summed over the runner's Chromium processes while C sessions hold the page (waitFor ${holdMs} ms), sampled 800 ms after the C-th page load in the last batch's runner; idle: the same browser with no session open; marginal: (PSS − idle) / C`,
    ],
  };
}
