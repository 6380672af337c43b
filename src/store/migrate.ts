import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Db } from './db.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../src/store/migrations/', import.meta.url));
// Run from src/ (tests) or dist/ (built): both resolve to the same src/store/migrations folder.
const LOCK_KEY = 727_001;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  const out: Migration[] = [];
  for (const file of files) {
    out.push({
      version: Number(file.slice(0, 4)),
      name: file,
      sql: await readFile(path.join(dir, file), 'utf8'),
    });
  }
  return out;
}

/**
 * Applies pending migrations in order, all in one transaction under a transaction-level advisory lock
 * (pg_advisory_xact_lock): concurrent `sfw migrate` runs and API starts apply each migration exactly once,
 * and the lock lives and dies with that one transaction, so it holds through PgBouncer in transaction
 * mode too (a session lock could be taken on one server connection and released on another). Creating
 * schema_migrations, reading what is applied, applying and recording happen under the lock; a failing
 * migration rolls the whole run back and the error names its file. Returns the applied names.
 */
export async function migrate(db: Db, opts: { dir?: string } = {}): Promise<string[]> {
  const migrations = await loadMigrations(opts.dir);
  const client = await db.connect();
  const applied: string[] = [];
  let broken = false;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    const done = new Set(rows.map((r) => r.version));
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
          m.version,
          m.name,
        ]);
      } catch (err) {
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.name);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken); // a connection that cannot even roll back is not given back to the pool
  }
  return applied;
}
