import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createDb, type Db } from '../../src/store/db.js';
import { ensureDatabase } from '../../src/store/embedded.js';
import { migrate } from '../../src/store/migrate.js';

/** migrate() applies a run of migrations in one transaction: all of them or, when one fails, none. */

const pools: Db[] = [];
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function emptyDb(label: string): Promise<Db> {
  const url = await ensureDatabase(
    inject('pgAdminUrl'),
    `t_migatomic_${label}_${process.pid}_${Date.now().toString(36)}`,
  );
  const db = createDb({ connectionString: url, max: 3 });
  pools.push(db);
  return db;
}

async function migrationsDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-migrations-'));
  dirs.push(dir);
  for (const [name, sql] of Object.entries(files)) await writeFile(path.join(dir, name), sql);
  return dir;
}

async function tables(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
  );
  return rows.map((r) => r.table_name);
}

describe('migrate() in one transaction', () => {
  it('a failing migration rolls back the whole run, and the error names its file', async () => {
    const db = await emptyDb('fail');
    const dir = await migrationsDir({
      '0001_first.sql': 'CREATE TABLE first_t (v int); INSERT INTO first_t VALUES (1);',
      '0002_broken.sql': 'CREATE TABLE second_t (v int); SELECT no_such_function();',
    });
    await expect(migrate(db, { dir })).rejects.toThrow(
      /^migration 0002_broken\.sql failed: .*no_such_function/,
    );
    // Nothing of the run is left: not the first migration, not its record, not the bookkeeping table.
    expect(await tables(db)).toEqual([]);

    await writeFile(path.join(dir, '0002_broken.sql'), 'CREATE TABLE second_t (v int);');
    expect(await migrate(db, { dir })).toEqual(['0001_first.sql', '0002_broken.sql']);
    expect(await tables(db)).toEqual(['first_t', 'schema_migrations', 'second_t']);
    const { rows } = await db.query<{ version: number; name: string }>(
      'SELECT version, name FROM schema_migrations ORDER BY version',
    );
    expect(rows).toEqual([
      { version: 1, name: '0001_first.sql' },
      { version: 2, name: '0002_broken.sql' },
    ]);
  });

  it('a later run applies only the new migrations; a failing one keeps the applied ones', async () => {
    const db = await emptyDb('later');
    const dir = await migrationsDir({ '0001_first.sql': 'CREATE TABLE first_t (v int);' });
    expect(await migrate(db, { dir })).toEqual(['0001_first.sql']);
    await writeFile(path.join(dir, '0002_next.sql'), 'CREATE TABLE next_t (v int);');
    await writeFile(path.join(dir, '0003_bad.sql'), 'ALTER TABLE missing_t ADD COLUMN x int;');
    await expect(migrate(db, { dir })).rejects.toThrow(/^migration 0003_bad\.sql failed/);
    expect(await tables(db)).toEqual(['first_t', 'schema_migrations']);
    await rm(path.join(dir, '0003_bad.sql'));
    expect(await migrate(db, { dir })).toEqual(['0002_next.sql']);
  });

  it('leaves no advisory lock behind, also when a migration failed', async () => {
    const db = await emptyDb('locks');
    const dir = await migrationsDir({ '0001_bad.sql': 'SELECT 1/0;' });
    await expect(migrate(db, { dir })).rejects.toThrow(/0001_bad\.sql/);
    const { rows } = await db.query(
      `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    expect(rows).toEqual([]);
    // And the next run is not blocked by one.
    await writeFile(path.join(dir, '0001_bad.sql'), 'SELECT 1;');
    expect(await migrate(db, { dir })).toEqual(['0001_bad.sql']);
  });
});
