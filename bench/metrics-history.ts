/**
 * Operations endpoints against a long history: N finished sessions (default 1,000,000) over 20 types and
 * 50 runners, then the rollup backfill of migration 0002 and the read times of /metrics, /v1/alerts,
 * /v1/stats/timeseries, /v1/runners and /v1/queue (in-process, app.inject). Standalone:
 * `npx tsx bench/metrics-history.ts` (N=100000 for a quick run).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres, ensureDatabase } from '../src/store/embedded.js';
import { createDb } from '../src/store/db.js';
import { migrate } from '../src/store/migrate.js';
import { buildApp } from '../src/server/app.js';

const N = Number(process.env.N ?? 1_000_000);
const dir = await mkdtemp(path.join(os.tmpdir(), 'mh-'));
const pg = await startEmbeddedPostgres(dir);
const url = await ensureDatabase(pg.url, 'mh');
const db = createDb({ connectionString: url, max: 10 });
await migrate(db);
let t = performance.now();
await db.query(`ALTER TABLE sessions DISABLE TRIGGER USER`);
await db.query(
  `INSERT INTO sessions (id, type, status, created_at, run_at, claimed_at, finished_at, claimed_by, attempt)
   SELECT gen_random_uuid(), 'type-' || (i % 20), (ARRAY['succeeded','succeeded','succeeded','failed','error','cancelled'])[1 + i % 6],
          now() - make_interval(secs => i), now() - make_interval(secs => i), now() - make_interval(secs => i - 1),
          now() - make_interval(secs => i - 1 - (i % 30)), 'runner-' || (i % 50), 1
   FROM generate_series(1, $1) AS i`,
  [N],
);
await db.query(`ALTER TABLE sessions ENABLE TRIGGER USER`);
await db.query('ANALYZE sessions');
console.log(`history: ${N} finished sessions inserted in ${(performance.now() - t).toFixed(0)} ms`);
// The rollup backfill as migration 0002 does it on an existing database.
const { readFileSync } = await import('node:fs');
const mig = readFileSync(new URL('../src/store/migrations/0002_session_stats.sql', import.meta.url), 'utf8');
const backfill = mig.slice(mig.indexOf('-- Sessions claimed or finished'));
t = performance.now();
await db.query('TRUNCATE session_stats');
await db.query(backfill);
console.log(`rollup backfill over the history: ${(performance.now() - t).toFixed(0)} ms`);
const { rows: chk } = await db.query(
  `SELECT (SELECT sum(count) FROM session_stats WHERE kind='finished')::bigint AS rolled, (SELECT count(*) FROM sessions WHERE status IN ('succeeded','failed','error','cancelled'))::bigint AS counted`,
);
console.log('finished rolled up vs counted:', chk[0]);
await db.query(
  `INSERT INTO sessions (id, type) SELECT gen_random_uuid(), 'type-' || (i % 20) FROM generate_series(1, 500) i`,
);
for (let r = 0; r < 50; r++)
  await db.query(
    `INSERT INTO runner_health (runner_id, total_sessions_executed, total_failures) VALUES ('runner-' || $1, 1000, 50)`,
    [r],
  );

const app = await buildApp({
  db,
  auth: { protectOps: false },
  staleSessionTimeoutMs: 30000,
  maxBodyBytes: 1e6,
  maxArtifactBytes: 1e6,
  artifactsDir: dir,
  version: 'bench',
});
async function time(url: string, n = 20) {
  const ms: number[] = [];
  let size = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await app.inject({ method: 'GET', url });
    ms.push(performance.now() - t0);
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode}`);
    size = res.body.length;
  }
  ms.sort((a, b) => a - b);
  console.log(
    `${url.padEnd(32)} median ${ms[Math.floor(n / 2)]!.toFixed(1)} ms  p90 ${ms[Math.floor(n * 0.9)]!.toFixed(1)} ms  (${size} bytes)`,
  );
}
await time('/metrics');
await time('/v1/alerts');
await time('/v1/stats/timeseries?minutes=60');
await time('/v1/runners');
await time('/v1/queue', 5);
await app.close();
await db.end();
await pg.stop();
await rm(dir, { recursive: true, force: true });
