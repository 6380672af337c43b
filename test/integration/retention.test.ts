import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SfwClient } from '@session-framework/sdk';
import { ConfigError } from '../../src/core/errors.js';
import { loadConfig } from '../../src/core/config.js';
import { uuidv7 } from '../../src/core/ids.js';
import { createDb, type Db } from '../../src/store/db.js';
import { finishedTotals, histograms } from '../../src/store/metrics.js';
import { queueStats, recentOutcomes } from '../../src/store/runners.js';
import { PRUNE_SQL, retentionTotals, type FinalStatus } from '../../src/store/retention.js';
import { exchange, insertSessions } from '../../src/store/sessions.js';
import {
  Retention,
  retentionSettings,
  type RetentionOptions,
  type RetentionSettings,
} from '../../src/server/retention.js';
import { LocalSessionFolders } from '../../src/server/retention-files.js';
import { retentionLine } from '../../src/cli/commands/status.js';
import { API_CONFIG_KEYS, startApi } from '../../src/server/main.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { startTestS3 } from '../helpers/s3.js';
import { waitFor } from '../helpers/wait.js';
import { freshDb } from '../helpers/db.js';
import { pgbouncerBinary, startPgBouncer } from '../helpers/pgbouncer.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const WINDOW = 15 * 60_000; // ALERT_FAILURE_WINDOW_MS's default: the recent failure rate's sessions

const RETENTION_KEYS = [
  'retentionMs',
  'retentionSucceededMs',
  'retentionFailedMs',
  'retentionErrorMs',
  'retentionCancelledMs',
] as const;

describe('retention settings', () => {
  it('default to 30 days for every status; per-status variables override; 0 keeps', () => {
    expect(retentionSettings(loadConfig(RETENTION_KEYS, { env: {} }))).toEqual({
      succeeded: 2_592_000_000,
      failed: 2_592_000_000,
      error: 2_592_000_000,
      cancelled: 2_592_000_000,
    });
    const cfg = loadConfig(RETENTION_KEYS, {
      env: { RETENTION_MS: '3600000', RETENTION_FAILED_MS: '0', RETENTION_ERROR_MS: '86400000' },
      flags: { 'retention-cancelled-ms': '120000' },
    });
    expect(retentionSettings(cfg)).toEqual({
      succeeded: HOUR,
      failed: 0,
      error: DAY,
      cancelled: 120_000,
    });
    expect(retentionSettings(loadConfig(RETENTION_KEYS, { env: { RETENTION_MS: '0' } }))).toEqual({
      succeeded: 0,
      failed: 0,
      error: 0,
      cancelled: 0,
    });
  });

  it('refuse bad values with an error naming the variable', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{ RETENTION_MS: '30d' }, /^RETENTION_MS must be a whole number, got "30d"$/],
      [{ RETENTION_MS: '500' }, /^RETENTION_MS must be 0 \(off\) or at least 60000, got 500$/],
      [{ RETENTION_MS: '-1' }, /^RETENTION_MS must be 0 \(off\) or at least 60000, got -1$/],
      [{ RETENTION_FAILED_MS: '1.5' }, /^RETENTION_FAILED_MS must be a whole number/],
      [{ RETENTION_CANCELLED_MS: '999999999999999' }, /^RETENTION_CANCELLED_MS must be at most/],
    ];
    for (const [env, message] of bad) {
      let err: unknown;
      try {
        loadConfig(RETENTION_KEYS, { env });
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(env)).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(message);
    }
    expect(() => loadConfig(RETENTION_KEYS, { flags: { 'retention-error-ms': '10' } })).toThrow(
      /^--retention-error-ms must be 0 \(off\) or at least 60000, got 10$/,
    );
  });
});

/** Ends sessions of `type` as `status` through the real claim and completion, then backdates them. */
async function finish(
  db: Db,
  type: string,
  status: FinalStatus,
  n: number,
  agoMs: number,
): Promise<string[]> {
  const made = await insertSessions(
    db,
    Array.from({ length: n }, () => ({ type })),
  );
  const ids = made.map((m) => m.row.id);
  if (status === 'cancelled') {
    await db.query(
      `UPDATE sessions SET status = 'cancelled', finished_at = now(), updated_at = now() WHERE id = ANY ($1::uuid[])`,
      [ids],
    );
  } else {
    const claimed = await exchange(db, {
      runnerId: `runner-${type}`,
      types: [type],
      slots: n,
      maxConcurrency: 1000,
      leaseMs: 30_000,
    });
    const sessions = claimed.claimed();
    expect(sessions).toHaveLength(n);
    await exchange(
      db,
      { runnerId: `runner-${type}`, types: [type], slots: 0, maxConcurrency: 1000, leaseMs: 30_000 },
      sessions.map((s) => ({
        id: s.id,
        leaseToken: s.leaseToken,
        status,
        ...(status === 'succeeded' ? {} : { errorMessage: 'boom' }),
      })),
    );
  }
  await backdate(db, ids, agoMs);
  return ids;
}

async function backdate(db: Db, ids: string[], agoMs: number): Promise<void> {
  await db.query(
    `UPDATE sessions SET finished_at = now() - $2 * interval '1 millisecond' WHERE id = ANY ($1::uuid[])`,
    [ids, agoMs],
  );
}

async function present(db: Db, ids: string[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    'SELECT id FROM sessions WHERE id = ANY ($1::uuid[]) ORDER BY id',
    [ids],
  );
  return rows.map((r) => r.id);
}

/** Everything /metrics, /v1/queue and the alerts show about sessions, from the rollups. */
async function statistics(db: Db) {
  const q = await queueStats(db);
  return {
    byStatus: q.byStatus,
    finished: await finishedTotals(db),
    duration: await histograms(db, 'duration'),
    claimWait: await histograms(db, 'claim_wait'),
    recent: await recentOutcomes(db, WINDOW),
    runners: (
      await db.query(
        'SELECT runner_id, total_sessions_executed, total_failures FROM runner_health ORDER BY 1',
      )
    ).rows,
  };
}

function metricLines(text: string, prefix: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .sort();
}

describe('pruning', () => {
  let api: TestApi;
  let artifactsDir: string;
  const settings: RetentionSettings = { succeeded: 60_000, failed: 0, error: DAY, cancelled: HOUR };

  beforeAll(async () => {
    artifactsDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-retention-'));
    api = await startTestApi('retention', { deps: { artifactsDir, retention: settings } });
  });
  afterAll(async () => {
    await api?.stop();
    await rm(artifactsDir, { recursive: true, force: true });
  });

  function retention(opts: Partial<RetentionOptions> = {}): Retention {
    const folders = new LocalSessionFolders(artifactsDir);
    return new Retention(
      api.db,
      folders,
      { settings, intervalMs: 60_000, minAgeMs: WINDOW, ...opts },
      folders,
    );
  }

  it('deletes final sessions past their status retention with their artifacts; totals stay', async () => {
    const { db } = api;
    // One succeeded session with an artifact uploaded over HTTP under its lease, finished two hours ago.
    const [withFile] = await insertSessions(db, [{ type: 'files' }]);
    const { sessions } = await api.runnerClient.claim('runner-files', {
      slots: 1,
      types: ['files'],
      maxConcurrency: 5,
    });
    const claimed = sessions[0]!;
    expect(claimed.id).toBe(withFile!.row.id);
    const bytes = Buffer.alloc(4321, 7);
    await api.runnerClient.uploadArtifact(claimed.id, 'page.png', claimed.leaseToken, bytes, 'image/png');
    await api.runnerClient.complete(claimed.id, { leaseToken: claimed.leaseToken, status: 'succeeded' });
    await backdate(db, [claimed.id], 2 * HOUR);
    const folder = path.join(artifactsDir, claimed.id);
    expect((await stat(folder)).isDirectory()).toBe(true);

    const oldSucceeded = await finish(db, 'shop', 'succeeded', 3, 2 * HOUR);
    const inWindow = await finish(db, 'shop', 'succeeded', 2, 10 * 60_000); // past 1 min, inside the window
    const oldFailed = await finish(db, 'shop', 'failed', 2, 30 * DAY); // failed: 0 keeps them
    const youngError = await finish(db, 'shop', 'error', 1, 2 * HOUR); // error: kept a day
    const oldError = await finish(db, 'shop', 'error', 2, 2 * DAY);
    const oldCancelled = await finish(db, 'shop', 'cancelled', 2, 2 * HOUR);
    const youngCancelled = await finish(db, 'shop', 'cancelled', 1, 30 * 60_000);
    // Not final: never deleted, even with a finished_at that would be old enough.
    const queued = (await insertSessions(db, [{ type: 'idle' }, { type: 'idle' }])).map((m) => m.row.id);
    const [running] = (await insertSessions(db, [{ type: 'busy' }])).map((m) => m.row.id);
    await exchange(db, {
      runnerId: 'runner-busy',
      types: ['busy'],
      slots: 1,
      maxConcurrency: 5,
      leaseMs: 30_000,
    });
    await db.query(
      `UPDATE sessions SET created_at = now() - interval '40 days', finished_at = now() - interval '40 days'
       WHERE id = ANY ($1::uuid[])`,
      [[...queued, running!]],
    );
    // A session whose webhook delivery is still pending waits for it; a delivered one goes with its session.
    const [pendingHook, deliveredHook] = await finish(db, 'hooked', 'succeeded', 2, 2 * HOUR);
    await db.query(
      `INSERT INTO webhook_deliveries (webhook_id, session_id, event, status)
       VALUES ($1, $2, 'session.succeeded', 'pending'), ($1, $3, 'session.succeeded', 'delivered')`,
      [uuidv7(), pendingHook, deliveredHook],
    );
    // Orphan folders: one two hours old (swept), one fresh (kept: it could be an upload's in progress).
    const oldOrphan = uuidv7();
    const freshOrphan = uuidv7();
    for (const id of [oldOrphan, freshOrphan]) {
      await mkdir(path.join(artifactsDir, id, uuidv7()), { recursive: true });
      await writeFile(path.join(artifactsDir, id, 'trace.zip'), Buffer.alloc(1000));
    }
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR);
    await utimes(path.join(artifactsDir, oldOrphan), twoHoursAgo, twoHoursAgo);

    const before = await statistics(db);
    const metricsBefore = await api.client.metrics();

    const pass = await retention({ batchSize: 2, pauseMs: 0 }).runOnce();

    const pruned = [claimed.id, ...oldSucceeded, deliveredHook!, ...oldError, ...oldCancelled];
    expect(pass.skipped).toBe(false);
    expect(pass.pruned).toEqual({ succeeded: 5, failed: 0, error: 2, cancelled: 2 });
    expect([...pass.ids].sort()).toEqual([...pruned].sort());
    expect(await present(db, pruned)).toEqual([]);
    const kept = [
      ...inWindow,
      ...oldFailed,
      ...youngError,
      ...youngCancelled,
      ...queued,
      running!,
      pendingHook!,
    ];
    expect(await present(db, kept)).toEqual([...kept].sort());
    expect(
      (await db.query('SELECT session_id FROM webhook_deliveries ORDER BY status')).rows.map(
        (r: { session_id: string }) => r.session_id,
      ),
    ).toEqual([pendingHook]);

    // Files: the pruned session's folder is gone, the old orphan too; the fresh orphan stays.
    await expect(stat(folder)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(path.join(artifactsDir, oldOrphan))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await stat(path.join(artifactsDir, freshOrphan))).isDirectory()).toBe(true);
    expect(pass.orphansSwept).toBe(1);

    // Totals, histograms, rates and runner totals are what they were.
    expect(await statistics(db)).toEqual(before);
    const metricsAfter = await api.client.metrics();
    for (const family of [
      'sfw_sessions_finished_total',
      'sfw_session_duration_seconds',
      'sfw_session_claim_wait_seconds',
      'sfw_runner_sessions_executed_total',
      'sfw_runner_failures_total',
      'sfw_alerts_firing',
    ])
      expect(metricLines(metricsAfter, family), family).toEqual(metricLines(metricsBefore, family));

    // /metrics shows what was pruned (fleet-wide, from the database) and promtool accepts it.
    const check = spawnSync('promtool', ['check', 'metrics'], { input: metricsAfter, encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`).toBe('');
    expect(metricsAfter).toContain('sfw_retention_pruned_sessions_total{status="succeeded"} 5');
    expect(metricsAfter).toContain('sfw_retention_pruned_sessions_total{status="failed"} 0');
    expect(metricsAfter).toContain('sfw_retention_pruned_sessions_total{status="error"} 2');
    expect(metricsAfter).toContain('sfw_retention_pruned_sessions_total{status="cancelled"} 2');
    expect(metricsAfter).toContain(`sfw_retention_pruned_artifact_bytes_total ${4321 + 1000}`);
    expect(metricsAfter).toContain('sfw_retention_orphan_folders_total 1');
    expect(metricsAfter).toContain('sfw_retention_seconds{status="succeeded"} 60');
    expect(metricsAfter).toContain('sfw_retention_seconds{status="failed"} 0');
    const last = /^sfw_retention_last_run_timestamp_seconds (\S+)$/m.exec(metricsAfter)?.[1];
    expect(Math.abs(Number(last) - Date.now() / 1000)).toBeLessThan(60);

    // GET /v1/retention (the SDK's retention(), what sfw status prints) says the same.
    const view = await api.client.retention();
    expect(view).toMatchObject({
      retentionMs: settings,
      pruned: { succeeded: 5, failed: 0, error: 2, cancelled: 2 },
      prunedArtifactBytes: 4321 + 1000,
      orphanFolders: 1,
    });
    expect(Date.parse(view.lastRunAt!)).toBeGreaterThan(Date.now() - 60_000);
    expect(retentionLine(view, Date.parse(view.lastRunAt!) + 12_000)).toBe(
      'succeeded 1 min · failed kept · error 1 d · cancelled 1 h   pruned 9, last run 12 s ago',
    );

    // The next pass finds nothing more.
    const again = await retention().runOnce();
    expect(again.ids).toEqual([]);
    expect((await retentionTotals(db)).pruned).toEqual({ succeeded: 5, failed: 0, error: 2, cancelled: 2 });
  });

  it('keeps everything with RETENTION_MS=0', async () => {
    const zero = retentionSettings(loadConfig(RETENTION_KEYS, { env: { RETENTION_MS: '0' } }));
    const old = await finish(api.db, 'kept', 'succeeded', 2, 400 * DAY);
    const r = retention({ settings: zero });
    expect(r.enabled).toBe(false);
    const pass = await r.runOnce();
    expect(pass.ids).toEqual([]);
    expect(await present(api.db, old)).toEqual([...old].sort());
  });
});

/** Two pools (two API replicas) pruning 1,500 old sessions at once, through `urls` (direct or PgBouncer). */
async function race(db: Db, urls: [string, string]): Promise<void> {
  const pools = urls.map((u) => createDb({ connectionString: u, max: 5 }));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-retention-race-'));
  try {
    const n = 1500;
    const ids = [
      ...(await finish(db, 'race', 'succeeded', n / 2, 2 * HOUR)),
      ...(await finish(db, 'race', 'failed', n / 2, 2 * HOUR)),
    ];
    const settings: RetentionSettings = { succeeded: HOUR, failed: HOUR, error: HOUR, cancelled: HOUR };
    const replicas = pools.map(
      (pool) =>
        new Retention(pool, new LocalSessionFolders(dir), {
          settings,
          intervalMs: 60_000,
          batchSize: 50,
          pauseMs: 0,
          maxBatches: 3,
        }),
    );
    const seen = replicas.map(() => [] as string[]);
    // Each replica runs passes until one of its passes finds nothing left.
    await Promise.all(
      replicas.map(async (r, i) => {
        for (;;) {
          const pass = await r.runOnce();
          seen[i]!.push(...pass.ids);
          if (!pass.skipped && pass.ids.length === 0) return;
        }
      }),
    );
    const all = [...seen[0]!, ...seen[1]!];
    expect(new Set(all).size).toBe(all.length);
    expect([...all].sort()).toEqual([...ids].sort());
    expect(await present(db, ids)).toEqual([]);
    expect((await retentionTotals(db)).pruned).toEqual({
      succeeded: n / 2,
      failed: n / 2,
      error: 0,
      cancelled: 0,
    });
    // Both took part: the lock is per batch, not held by one replica for good.
    expect(seen[0]!.length).toBeGreaterThan(0);
    expect(seen[1]!.length).toBeGreaterThan(0);
    // No advisory lock outlives its batch on any server connection.
    const { rows } = await db.query(
      `SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
       WHERE l.locktype = 'advisory' AND d.datname = current_database()`,
    );
    expect(rows).toEqual([]);
  } finally {
    await Promise.all(pools.map((p) => p.end()));
    await rm(dir, { recursive: true, force: true });
  }
}

describe('two API replicas pruning at once', () => {
  it('delete each session once, without errors', async () => {
    const { db, url } = await freshDb('retention_race');
    try {
      await race(db, [url, url]);
    } finally {
      await db.end();
    }
  });

  const BIN = pgbouncerBinary();
  it.skipIf(!BIN && !process.env.REQUIRE_PGBOUNCER)(
    'through PgBouncer in transaction mode: each session once, no lock left behind',
    async () => {
      const bouncer = await startPgBouncer(inject('pgAdminUrl'), { poolSize: 3 });
      const { db, url } = await freshDb('retention_pgb');
      try {
        const through = bouncer.urlFor(new URL(url).pathname.slice(1));
        await race(db, [through, through]);
      } finally {
        await db.end();
        await bouncer.stop();
      }
    },
  );
});

describe('sfw api', () => {
  it('runs the pruning loop with the settings of its variables, and /metrics shows it', async () => {
    const { db, url } = await freshDb('retention_api');
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-retention-api-'));
    const cfg = loadConfig(API_CONFIG_KEYS, {
      env: {
        DATABASE_URL: url,
        PORT: '0',
        DATA_DIR: dataDir,
        LOG_LEVEL: 'silent',
        RETENTION_MS: '3600000',
        RETENTION_CANCELLED_MS: '0',
        RETENTION_INTERVAL_MS: '1000',
      },
    });
    const api = await startApi(cfg);
    const client = new SfwClient({ baseUrl: api.url, retries: 0 });
    try {
      // A session with an artifact stored through the API's artifact store (ARTIFACTS_DIR's default).
      const [withFile] = await insertSessions(db, [{ type: 'api-files' }]);
      const { sessions } = await client.claim('api-runner', {
        slots: 1,
        types: ['api-files'],
        maxConcurrency: 5,
      });
      const s = sessions[0]!;
      await client.uploadArtifact(s.id, 'shot.png', s.leaseToken, Buffer.alloc(100), 'image/png');
      await client.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded' });
      const folder = path.join(dataDir, 'artifacts', withFile!.row.id);
      expect((await stat(folder)).isDirectory()).toBe(true);
      await backdate(db, [s.id], 2 * HOUR);
      const gone = [s.id, ...(await finish(db, 'api', 'succeeded', 3, 2 * HOUR))];
      const cancelled = await finish(db, 'api', 'cancelled', 2, 2 * HOUR);
      const recent = await finish(db, 'api', 'failed', 1, 30 * 60_000);
      await waitFor(async () => (await present(db, gone)).length === 0, {
        what: 'the API to prune the old succeeded sessions',
      });
      expect(await present(db, [...cancelled, ...recent])).toEqual([...cancelled, ...recent].sort());
      const text = await (await fetch(`${api.url}/metrics`)).text();
      expect(text).toContain('sfw_retention_pruned_sessions_total{status="succeeded"} 4');
      await expect(stat(folder)).rejects.toMatchObject({ code: 'ENOENT' });
      expect(text).toContain('sfw_retention_seconds{status="succeeded"} 3600');
      expect(text).toContain('sfw_retention_seconds{status="cancelled"} 0');
    } finally {
      await client.close();
      await api.stop();
      await db.end();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
  it("with ARTIFACTS_URL=s3://… removes the pruned sessions' objects from the bucket", async () => {
    const s3 = await startTestS3('sfw-retention');
    const { db, url } = await freshDb('retention_s3');
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-retention-s3-'));
    const api = await startApi(
      loadConfig(API_CONFIG_KEYS, {
        env: {
          DATABASE_URL: url,
          PORT: '0',
          DATA_DIR: dataDir,
          LOG_LEVEL: 'silent',
          ARTIFACTS_URL: 's3://sfw-retention/runs',
          S3_ENDPOINT: s3.endpoint,
          S3_REGION: 'us-east-1',
          S3_FORCE_PATH_STYLE: 'true',
          AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
          RETENTION_MS: '3600000',
          RETENTION_INTERVAL_MS: '1000',
        },
      }),
    );
    const client = new SfwClient({ baseUrl: api.url, retries: 0 });
    try {
      const made = await insertSessions(db, [{ type: 's3-files' }, { type: 's3-files' }]);
      const { sessions } = await client.claim('s3-runner', {
        slots: 2,
        types: ['s3-files'],
        maxConcurrency: 5,
      });
      expect(sessions).toHaveLength(2);
      for (const s of sessions) {
        await client.uploadArtifact(s.id, 'shot.png', s.leaseToken, Buffer.alloc(300), 'image/png');
        await client.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded' });
      }
      const [old, young] = made.map((m) => m.row.id);
      await backdate(db, [old!], 2 * HOUR);
      expect((await s3.list(`runs/${old}/`)).size).toBe(1);
      await waitFor(async () => (await present(db, [old!])).length === 0, {
        what: 'the API to prune the old session',
      });
      await waitFor(async () => (await s3.list(`runs/${old}/`)).size === 0, {
        what: "the old session's object to leave the bucket",
      });
      expect((await s3.list(`runs/${young}/`)).size).toBe(1);
      expect(await present(db, [young!])).toEqual([young]);
    } finally {
      await client.close();
      await api.stop();
      await db.end();
      await s3.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  Plans?: PlanNode[];
}

function nodes(p: PlanNode): PlanNode[] {
  return [p, ...(p.Plans ?? []).flatMap(nodes)];
}

describe('the pruning statement on 100,000 sessions', () => {
  let db: Db;
  beforeAll(async () => {
    ({ db } = await freshDb('retention_plan'));
    // 100,000 final sessions over 100 days (a quarter each status) and 1,000 queued, then statistics.
    await db.query(
      `INSERT INTO sessions (id, type, status, created_at, finished_at, claimed_by, artifacts)
       SELECT gen_random_uuid(), 'plan', (ARRAY['succeeded','failed','error','cancelled'])[1 + i % 4],
              now() - (i * interval '86 seconds'), now() - (i * interval '86 seconds'), 'r',
              CASE WHEN i % 10 = 0 THEN '[{"name":"a.png","size":100,"contentType":"image/png"}]'::jsonb
                   ELSE '[]'::jsonb END
       FROM generate_series(1, 100000) i`,
    );
    await db.query(
      `INSERT INTO sessions (id, type) SELECT gen_random_uuid(), 'plan' FROM generate_series(1, 1000)`,
    );
    await db.query('ANALYZE sessions');
    await db.query('ANALYZE webhook_deliveries');
  });
  afterAll(async () => {
    await db.end();
  });

  // Nearly all of a status past its retention (a backlog), about half, and a few.
  for (const [label, olderThanMs] of [
    ['a backlog', 60_000],
    ['half', 50 * DAY],
    ['a few', 99 * DAY],
  ] as const) {
    it(`reads the retention index and only the rows it deletes (${label})`, async () => {
      const client = await db.connect();
      try {
        await client.query('BEGIN');
        const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
          `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${PRUNE_SQL}`,
          ['failed', olderThanMs, 1000],
        );
        await client.query('ROLLBACK');
        const all = nodes(rows[0]!['QUERY PLAN'][0].Plan);
        const onSessions = all.filter((n) => n['Relation Name'] === 'sessions');
        expect(
          onSessions.some((n) => n['Node Type'] === 'Seq Scan'),
          JSON.stringify(onSessions),
        ).toBe(false);
        const scan = all.find((n) => n['Index Name'] === 'sessions_retention_idx');
        expect(scan, JSON.stringify(all.map((n) => [n['Node Type'], n['Index Name']]))).toBeDefined();
        expect(scan!['Actual Rows']).toBeLessThanOrEqual(1000);
      } finally {
        client.release();
      }
    });
  }
});
