/**
 * The API's memory while it exports every session: seeds EXPORT_ROWS finished sessions (default 1,000,000)
 * in bulk inserts of 100,000, starts `sfw api` as its own process over them, then streams
 * GET /v1/sessions/export (JSON lines, then CSV) to nowhere while sampling the API process' RSS from
 * /proc every 50 ms. Prints the baseline (idle after a first request) against the peak of each export and
 * writes bench/results/export-memory-<time>.json.
 *
 *   node --import tsx scripts/export-memory.ts            # 1,000,000 rows (heavy: minutes of CPU)
 *   EXPORT_ROWS=100000 node --import tsx scripts/export-memory.ts
 *   EXPORT_API_NODE_OPTIONS=--max-old-space-size=96 …     # the API under a small heap bound
 *
 * With DATABASE_URL (a server that lets the user create databases) that server is used; else an embedded
 * one in a temporary folder. Not a test: run it by hand.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDb } from '../src/store/db.js';
import { ensureDatabase, startEmbeddedPostgres, type EmbeddedPostgres } from '../src/store/embedded.js';
import { migrate } from '../src/store/migrate.js';

const ROWS = Number(process.env.EXPORT_ROWS ?? 1_000_000);
const SEED_BATCH = 100_000;
const SAMPLE_MS = 50;
const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? 0) * 1024;
}

/** Streams one export to nowhere; answers its bytes and milliseconds. */
function exportOnce(base: string, query: string): Promise<{ bytes: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get(`${base}/v1/sessions/export?${query}`, (res) => {
        if (res.statusCode !== 200) reject(new Error(`export answered ${res.statusCode}`));
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve({ bytes, ms: performance.now() - started }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

async function waitReady(base: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      http
        .get(`${base}/readyz`, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        })
        .on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the API did not become ready');
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;

async function main(): Promise<void> {
  let embedded: EmbeddedPostgres | undefined;
  let dir: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-export-memory-'));
    embedded = await startEmbeddedPostgres(path.join(dir, 'pg'));
    adminUrl = embedded.url;
  }
  const url = await ensureDatabase(adminUrl, `export_memory_${Date.now().toString(36)}`);
  const db = createDb({ connectionString: url, max: 2 });
  let api: ReturnType<typeof spawn> | undefined;
  try {
    await migrate(db);
    const seedStarted = performance.now();
    for (let done = 0; done < ROWS; done += SEED_BATCH) {
      const n = Math.min(SEED_BATCH, ROWS - done);
      // Results of about 200 bytes, one session in 50 failed with a message, every one tagged.
      await db.query(
        `INSERT INTO sessions (id, type, input, status, created_at, updated_at, run_at, claimed_by, claimed_at,
                               finished_at, attempt, result, error_message, tags)
         SELECT gen_random_uuid(), 'export-bench', '{}'::jsonb,
                CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END, t, t, t, 'runner-' || (g % 8), t,
                t + interval '1 second', 1,
                jsonb_build_object('i', g, 'title', 'Product page ' || g, 'price', g * 1.25,
                                   'items', jsonb_build_array('a, "quoted"', 'b', g)),
                CASE WHEN g % 50 = 0 THEN 'step 2 (click) failed: no element matches "#buy"' END,
                ARRAY['batch-' || (g / 1000)]
         FROM generate_series($1::integer + 1, $1::integer + $2::integer) AS g,
              LATERAL (SELECT now() - make_interval(secs => ($1::integer + $2::integer - g) / 100.0) AS t) x`,
        [done, n],
      );
      process.stderr.write(`seeded ${done + n}/${ROWS}\r`);
    }
    await db.query('VACUUM (ANALYZE) sessions');
    const seedMs = performance.now() - seedStarted;
    process.stderr.write(`\nseeded ${ROWS} sessions in ${(seedMs / 1000).toFixed(1)} s\n`);

    const port = 20_000 + Math.floor(Math.random() * 20_000);
    api = spawn(
      process.execPath,
      [
        '--conditions=@session-framework/source',
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { main } = await import('./src/cli/main.ts'); process.exit(await main(['api']));`,
      ],
      {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: os.tmpdir(),
          DATABASE_URL: url,
          PORT: String(port),
          HOST: '127.0.0.1',
          DATA_DIR: dir ?? (await mkdtemp(path.join(os.tmpdir(), 'sfw-export-memory-data-'))),
          LOG_LEVEL: 'warn',
          RETENTION_MS: '0',
          // e.g. --max-old-space-size=96: a heap bound the export must live within if it holds no rows.
          NODE_OPTIONS: process.env.EXPORT_API_NODE_OPTIONS ?? '',
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    const pid = api.pid!;
    const base = `http://127.0.0.1:${port}`;
    await waitReady(base);
    // A first small export (one tag) warms the route, the pool and the JIT before the baseline.
    await exportOnce(base, 'format=jsonl&tag=batch-1');
    await new Promise((r) => setTimeout(r, 2000));
    const baseline = await rssOf(pid);
    const runs: { format: string; bytes: number; ms: number; peakRss: number; rowsPerSecond: number }[] = [];
    for (const format of ['jsonl', 'csv']) {
      let peak = 0;
      const timer = setInterval(() => {
        void rssOf(pid).then((r) => (peak = Math.max(peak, r)));
      }, SAMPLE_MS);
      const { bytes, ms } = await exportOnce(base, `format=${format}`);
      clearInterval(timer);
      peak = Math.max(peak, await rssOf(pid));
      runs.push({ format, bytes, ms, peakRss: peak, rowsPerSecond: Math.round(ROWS / (ms / 1000)) });
    }
    const report = {
      rows: ROWS,
      seedSeconds: seedMs / 1000,
      baselineRss: baseline,
      runs: runs.map((r) => ({ ...r, overBaseline: r.peakRss - baseline })),
      apiNodeOptions: process.env.EXPORT_API_NODE_OPTIONS ?? '',
      node: process.version,
      cpus: os.cpus().length,
      loadAverage: os.loadavg(),
      at: new Date().toISOString(),
    };
    console.log(`export of ${ROWS.toLocaleString('en')} sessions: API RSS baseline ${mb(baseline)}`);
    console.log('format  bytes        seconds  rows/s    peak RSS   over baseline');
    for (const r of report.runs)
      console.log(
        `${r.format.padEnd(7)} ${mb(r.bytes).padEnd(12)} ${(r.ms / 1000).toFixed(1).padEnd(8)} ${String(r.rowsPerSecond).padEnd(9)} ${mb(r.peakRss).padEnd(10)} ${mb(r.overBaseline)}`,
      );
    const out = path.join(ROOT, 'bench/results', `export-memory-${report.at.replace(/[:.]/g, '-')}.json`);
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`wrote ${path.relative(ROOT, out)}`);
  } finally {
    if (api && api.exitCode === null) {
      api.kill('SIGTERM');
      await new Promise((r) => api!.once('exit', r));
    }
    await db.end();
    await embedded?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

await main();
