import { afterAll, beforeAll } from 'vitest';
import { findChromium } from '../../src/browser/chromium.js';
import { BrowserPool } from '../../src/browser/pool.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';

/** The Chromium the browser tests run (CHROMIUM_PATH, else the one found on the machine). */
export async function requireChromium(): Promise<string> {
  const found = await findChromium(process.env.CHROMIUM_PATH);
  if (!found) throw new Error('Chromium is required for this test: apt-get install -y chromium');
  return found.path;
}

/**
 * A browser pool and the fixture site for one test file, started before its tests and closed after
 * them. Read `pool` and `site` inside tests (they are set once the file's setup ran).
 */
export function useFixturePool(): { readonly pool: BrowserPool; readonly site: FixtureServer } {
  let pool: BrowserPool | undefined;
  let site: FixtureServer | undefined;
  beforeAll(async () => {
    const executablePath = await requireChromium();
    site = await startFixtureServer();
    pool = new BrowserPool({ executablePath });
    await pool.start();
  });
  afterAll(async () => {
    await pool?.close();
    await site?.close();
  });
  return {
    get pool() {
      if (!pool) throw new Error('the browser pool is not started yet');
      return pool;
    },
    get site() {
      if (!site) throw new Error('the fixture site is not started yet');
      return site;
    },
  };
}
