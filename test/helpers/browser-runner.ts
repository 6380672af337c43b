import { BrowserPool } from '../../src/browser/pool.js';
import { executeSession } from '../../src/sessions/execute.js';
import type { SessionType } from '../../src/sessions/registry.js';
import type { TestApi } from './api.js';
import { requireChromium } from './chromium.js';
import { startRunner, type InProcessRunner } from './runner.js';

/**
 * An in-process runner serving one browser session type with the runner's own executor (executeSession)
 * and a real browser pool of Chromium. `stop` stops the runner, then closes the pool.
 */
export interface BrowserTypeRunner {
  runner: InProcessRunner;
  pool: BrowserPool;
  stop(): Promise<void>;
}

export async function startBrowserTypeRunner(
  api: TestApi,
  runnerId: string,
  type: SessionType,
): Promise<BrowserTypeRunner> {
  const pool = new BrowserPool({ executablePath: await requireChromium() });
  await pool.start();
  const runner = await startRunner(api, {
    runnerId,
    types: [{ name: type.name, browser: true }],
    executor: (session, ctx) =>
      executeSession({
        session,
        type,
        pool,
        signal: ctx.signal,
        abort: (reason) => ctx.abort(reason),
        upload: (name, data, contentType) => ctx.upload(name, data, contentType),
        log: ctx.log,
      }),
  });
  return {
    runner,
    pool,
    stop: async () => {
      await runner.stop();
      await pool.close();
    },
  };
}
