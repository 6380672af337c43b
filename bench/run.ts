import os from 'node:os';
import path from 'node:path';
import { SMOKE, sfwMode, startBenchPostgres } from './lib/env.js';
import type { BenchContext } from './lib/context.js';
import { environment, printResult, RESULTS_DIR, writeResult, type PartResult } from './lib/report.js';
import { runScale } from './parts/scale.js';
import { runWake } from './parts/wake.js';
import { runThroughput } from './parts/throughput.js';
import { runBrowser } from './parts/browser.js';
import { runMemory } from './parts/memory.js';
import { runFleet } from './parts/fleet.js';
import { runServers } from './parts/servers.js';
import { runBuilds } from './parts/builds.js';
import { runSchedules } from './parts/schedules.js';
import { runWebhooks } from './parts/webhooks.js';
import { runLimits } from './parts/limits.js';
import { runCapture } from './parts/capture.js';
import { runRemote } from './parts/remote.js';

/**
 * `npm run bench [-- part…]`: runs the named parts (default all) against one embedded Postgres, prints a
 * table per part and writes bench/results/runs/<part>-<date>.json. BENCH_SMOKE=1: tiny sizes, seconds.
 */

export const PARTS: Record<string, (ctx: BenchContext) => Promise<PartResult>> = {
  throughput: runThroughput,
  wake: runWake,
  browser: runBrowser,
  memory: runMemory,
  scale: runScale,
  fleet: runFleet,
  servers: runServers,
  builds: runBuilds,
  schedules: runSchedules,
  webhooks: runWebhooks,
  limits: runLimits,
  capture: runCapture,
  remote: runRemote,
};

export interface BenchRun {
  results: PartResult[];
  files: string[];
  /** Parts that threw (their error was logged). */
  failed: string[];
}

export async function runBench(
  parts: string[],
  opts: { smoke?: boolean; resultsDir?: string; log?: (s: string) => void; adminUrl?: string } = {},
): Promise<BenchRun> {
  const unknown = parts.filter((p) => !PARTS[p]);
  if (unknown.length > 0)
    throw new Error(`unknown bench part(s) ${unknown.join(', ')}; parts: ${Object.keys(PARTS).join(', ')}`);
  const log = opts.log ?? ((s: string) => console.log(s));
  const smoke = opts.smoke ?? SMOKE;
  const pg = await startBenchPostgres(opts.adminUrl);
  const out: BenchRun = { results: [], files: [], failed: [] };
  try {
    for (const part of parts) {
      const env = environment(pg.version, smoke);
      env.versions['sfw processes from'] = sfwMode();
      const t0 = Date.now();
      let result: PartResult;
      try {
        result = await PARTS[part]!({ pg, smoke, log });
      } catch (err) {
        // One broken part does not cost the others' figures; the run still fails at the end.
        log(`\n== ${part} == FAILED: ${(err as Error).stack ?? String(err)}`);
        out.failed.push(part);
        continue;
      }
      result.notes.push(
        `part took ${Math.round((Date.now() - t0) / 1000)} s; load average before ${env.machine.loadavg.join(' ')}`,
      );
      printResult(result, log);
      // Smoke runs prove the harness works; their figures mean nothing and stay out of bench/results.
      const dir = opts.resultsDir ?? (smoke ? path.join(os.tmpdir(), 'sfw-bench-smoke') : RESULTS_DIR);
      const file = await writeResult(env, result, dir);
      log(`wrote ${file}`);
      out.results.push(result);
      out.files.push(file);
    }
  } finally {
    await pg.stop();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const parts = args.length > 0 ? args : Object.keys(PARTS);
  runBench(parts).then(
    (run) => process.exit(run.failed.length > 0 ? 1 : 0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
