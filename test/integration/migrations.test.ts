import { inject } from 'vitest';
import { afterAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/store/db.js';
import { ensureDatabase } from '../../src/store/embedded.js';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadMigrations, migrate } from '../../src/store/migrate.js';
import { seedFinishedSessions } from '../../bench/lib/seed.js';
import { exchange, insertSessions, newSessionRow } from '../../src/store/sessions.js';
import { queueStats, recordHeartbeats } from '../../src/store/runners.js';
import { registerSessionTypes, resolveTypes } from '../../src/store/types.js';

const pools: Db[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
});

let counter = 0;
async function emptyDatabase(label: string): Promise<string> {
  return ensureDatabase(
    inject('pgAdminUrl'),
    `t_mig_${label}_${process.pid}_${Date.now().toString(36)}_${counter++}`,
  );
}
function pool(url: string): Db {
  const db = createDb({ connectionString: url, max: 3 });
  pools.push(db);
  return db;
}

async function columns(db: Db, table: string): Promise<string[]> {
  const { rows } = await db.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
    [table],
  );
  return rows.map((r) => r.column_name);
}

describe('migrations', () => {
  it('are numbered, uniquely versioned and in order', async () => {
    const all = await loadMigrations();
    expect(all.length).toBeGreaterThanOrEqual(1);
    expect(all[0]!.name).toMatch(/^0001_/);
    const versions = all.map((m) => m.version);
    expect(new Set(versions).size).toBe(versions.length);
    expect([...versions].sort((a, b) => a - b)).toEqual(versions);
    for (const m of all) expect(m.name).toMatch(/^\d{4}_[\w-]+\.sql$/);
  });

  it('create the schema on a fresh database with the guide’s names', async () => {
    const db = pool(await emptyDatabase('fresh'));
    const all = await loadMigrations();
    expect(await migrate(db)).toEqual(all.map((m) => m.name));
    const sessions = await columns(db, 'sessions');
    for (const c of [
      'id',
      'type',
      'input',
      'status',
      'priority',
      'created_at',
      'updated_at',
      'run_at',
      'claimed_by',
      'claimed_at',
      'attempt',
      'max_attempts',
      'timeout_ms',
      'lease_token',
      'lease_expires_at',
      'result',
      'error_message',
      'artifacts',
    ])
      expect(sessions, c).toContain(c);
    const health = await columns(db, 'runner_health');
    for (const c of [
      'runner_id',
      'last_heartbeat',
      'active_sessions',
      'total_sessions_executed',
      'total_failures',
      'uptime_seconds',
      'status',
      'max_concurrency',
      'hostname',
      'version',
    ])
      expect(health, c).toContain(c);
    const config = await columns(db, 'scheduler_config');
    expect(config).toContain('max_concurrency');
    expect(config).toContain('poll_interval_ms');
    const { rows } = await db.query<{ max_concurrency: number; poll_interval_ms: number }>(
      'SELECT max_concurrency, poll_interval_ms FROM scheduler_config',
    );
    expect(rows).toEqual([{ max_concurrency: 3, poll_interval_ms: 5000 }]);
    const { rows: fn } = await db.query<{ proname: string }>(
      `SELECT proname FROM pg_proc WHERE proname LIKE 'sfw\\_%' ORDER BY proname`,
    );
    // One definition of claiming (sfw_claim, used by the exchange and the waiting pass), one of completing.
    expect(fn.map((f) => f.proname)).toEqual(
      expect.arrayContaining([
        'sfw_claim',
        'sfw_claim_waiting',
        'sfw_complete',
        'sfw_exchange',
        'sfw_retries',
        'sfw_retry_delay',
      ]),
    );
    const { rows: tables } = await db.query<{ tablename: string }>(
      `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
    );
    expect(tables.map((t) => t.tablename)).toEqual(
      expect.arrayContaining([
        'session_ready',
        'session_running',
        'session_scheduled',
        'session_types',
        'sessions',
      ]),
    );
  });

  // From this release on migrations are append-only: the next one is applied here to a database populated
  // under this release's schema (sessions in every state, runners, statistics) and must keep it working.
  it('upgrade a populated database from this release’s schema', async () => {
    const RELEASE = 9; // the last migration of the released schema
    const all = await loadMigrations();
    const releaseDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-release-migrations-'));
    for (const m of all.filter((x) => x.version <= RELEASE))
      await writeFile(path.join(releaseDir, m.name), m.sql);
    const db = pool(await emptyDatabase('upgrade'));
    expect(await migrate(db, { dir: releaseDir })).toHaveLength(RELEASE);
    // Sessions in every state, a runner, statistics, under the released schema.
    await seedFinishedSessions(db, 'old', 500);
    // Enqueued as the released code did (its columns), one of them with an idempotency key from before
    // request hashes (0002 added them; such keys are answered as before).
    await db.query(
      `INSERT INTO sessions (id, type, run_at, idempotency_key)
       SELECT gen_random_uuid(), 'old', now() + make_interval(secs => CASE WHEN n = 6 THEN 3600 ELSE 0 END),
              CASE WHEN n = 1 THEN 'old-key' END
       FROM generate_series(1, 6) AS n`,
    );
    const running = await exchange(db, {
      runnerId: 'old-runner',
      types: ['old'],
      slots: 2,
      maxConcurrency: 3,
      leaseMs: 30_000,
    });
    expect(running.claimedCount).toBe(2);
    // A runner told its types (0002's runner_health.types), and a keyed session with its request hash.
    await recordHeartbeats(
      db,
      [{ runnerId: 'old-runner', activeSessions: 2, maxConcurrency: 3, types: ['old'], sessions: [] }],
      30_000,
    );
    // Inserted with the released schema's columns (today's insertSessions writes later ones too).
    const keyed = newSessionRow({ type: 'keyed', input: { n: 1 }, idempotencyKey: 'hashed-key' });
    expect(keyed.request_hash).toEqual(expect.any(String));
    await db.query(
      `INSERT INTO sessions (id, type, input, artifact_options, idempotency_key, request_hash)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [keyed.id, keyed.type, keyed.input, keyed.artifact_options, keyed.idempotency_key, keyed.request_hash],
    );
    // A webhook for finished sessions, made under the released schema (0005).
    await db.query(
      `INSERT INTO webhooks (id, url, events, secret) VALUES (gen_random_uuid(), 'http://127.0.0.1:9/hook', '{session.finished}', 'whsec_old')`,
    );
    const applied = await migrate(db);
    expect(applied).toEqual(all.filter((m) => m.version > RELEASE).map((m) => m.name));
    // The running sessions complete, the queued ones are claimed, the scheduled one waits.
    const next = await exchange(
      db,
      { runnerId: 'old-runner', types: ['old'], slots: 3, maxConcurrency: 3, leaseMs: 30_000 },
      running.claimed().map((c) => ({ id: c.id, leaseToken: c.leaseToken, status: 'succeeded' })),
    );
    expect(next.completed.map((c) => c.outcome)).toEqual(['accepted', 'accepted']);
    // Each session made final after the upgrade has its delivery to the old webhook, once.
    const { rows: deliveries } = await db.query<{ session_id: string; event: string }>(
      'SELECT session_id, event FROM webhook_deliveries ORDER BY session_id',
    );
    expect(deliveries).toEqual(
      running
        .claimed()
        .map((c) => ({ session_id: c.id, event: 'session.succeeded' }))
        .sort((x, y) => x.session_id.localeCompare(y.session_id)),
    );
    expect(next.claimedCount).toBe(3);
    const stats = await queueStats(db);
    // Statistics count transitions (the seeded history was inserted already finished).
    // (The scheduled one and the keyed session no runner here claims.)
    expect(stats.byStatus).toMatchObject({ queued: 2, running: 3, succeeded: 2 });
    // A key of the released schema has no request hash: its repeat is answered as before.
    const [again] = await insertSessions(db, [
      { type: 'old', input: { other: true }, idempotencyKey: 'old-key' },
    ]);
    expect(again).toMatchObject({ created: false, row: { idempotency_key: 'old-key', request_hash: null } });
    const [repeat] = await insertSessions(db, [
      { type: 'keyed', input: { n: 1 }, idempotencyKey: 'hashed-key' },
    ]);
    expect(repeat).toMatchObject({ created: false, row: { id: keyed.id } });
    // The runner keeps its types; types registered after the upgrade are checked at enqueue.
    const { rows: told } = await db.query<{ types: string[] }>(
      `SELECT types FROM runner_health WHERE runner_id = 'old-runner'`,
    );
    expect(told[0]?.types).toEqual(['old']);
    await registerSessionTypes(
      db,
      'old-runner',
      [{ name: 'old', schema: { type: 'object' }, schemaHash: 'h', note: null }],
      { liveMs: 60_000, retentionMs: 86_400_000 },
    );
    expect(await resolveTypes(db, ['old', 'new'], { liveMs: 60_000, retentionMs: 86_400_000 })).toEqual(
      new Map([['old', { schemaHash: 'h', timeoutMs: null, maxAttempts: null }]]),
    );
  });

  it('are a no-op when run again', async () => {
    const db = pool(await emptyDatabase('rerun'));
    await migrate(db);
    const before = await db.query('SELECT version, name, applied_at FROM schema_migrations ORDER BY version');
    expect(await migrate(db)).toEqual([]);
    expect(await migrate(db)).toEqual([]);
    const after = await db.query('SELECT version, name, applied_at FROM schema_migrations ORDER BY version');
    expect(after.rows).toEqual(before.rows);
  });

  it('apply each migration exactly once under three concurrent runs from separate pools', async () => {
    const url = await emptyDatabase('concurrent');
    const runs = await Promise.all([migrate(pool(url)), migrate(pool(url)), migrate(pool(url))]);
    const all = (await loadMigrations()).map((m) => m.name);
    // One run applies everything; the others wait on the advisory lock and find nothing to do.
    expect(runs.flat().sort()).toEqual([...all].sort());
    expect(runs.filter((r) => r.length > 0)).toHaveLength(1);
    const db = pool(url);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
    expect(rows[0]!.n).toBe(all.length);
    const { rows: cfg } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM scheduler_config');
    expect(cfg[0]!.n).toBe(1);
  });

  it('leave a database already in use intact (data kept, nothing re-applied)', async () => {
    const db = pool(await emptyDatabase('inuse'));
    await migrate(db);
    await db.query(`INSERT INTO sessions (id, type) VALUES (gen_random_uuid(), 'kept')`);
    expect(await migrate(db)).toEqual([]);
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sessions WHERE type = 'kept'`,
    );
    expect(rows[0]!.n).toBe(1);
  });
});
