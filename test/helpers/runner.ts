import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { SfwClient, sleep } from '../../src/sdk/client.js';
import { Runner, type Executor, type RunnerOptions } from '../../src/runner/runner.js';
import type { Db } from '../../src/store/db.js';
import type { TestApi } from './api.js';

/** Helpers for runner tests: an in-process runner against a test API, fake executors, an API outage. */

export const silentLog = pino({ level: process.env.SFW_TEST_LOG ?? 'silent' });

/** A `browser: false` executor: waits input.ms (aborts promptly), answers {slept}. */
export const sleepExecutor: Executor = async (session, { signal }) => {
  const ms = Number((session.input as { ms?: number } | null)?.ms ?? 0);
  const t0 = Date.now();
  await sleep(ms, signal);
  if (signal.aborted) return { status: 'cancelled', errorMessage: 'aborted' };
  return { status: 'succeeded', result: { slept: Date.now() - t0 } };
};

export interface InProcessRunner {
  runner: Runner;
  client: SfwClient;
  stop(): Promise<number>;
}

export async function startRunner(
  api: TestApi,
  opts: Partial<RunnerOptions> & { runnerId: string },
): Promise<InProcessRunner> {
  const client = new SfwClient({ baseUrl: api.url, retries: 0, timeoutMs: 10_000 });
  const runner = new Runner({
    client,
    types: [{ name: 'sleep', browser: false }],
    executor: sleepExecutor,
    log: silentLog,
    pollIntervalMs: 2000,
    heartbeatIntervalMs: 500,
    backoffMs: 50,
    maxBackoffMs: 500,
    ...opts,
  });
  await runner.start();
  return {
    runner,
    client,
    stop: async () => {
      const code = await runner.stop();
      await client.close();
      return code;
    },
  };
}

/** Running sessions per runner, as the database sees them. */
export async function runningByRunner(db: Db): Promise<Map<string, number>> {
  const { rows } = await db.query<{ claimed_by: string; n: number }>(
    `SELECT claimed_by, count(*)::int AS n FROM sessions WHERE status = 'running' GROUP BY claimed_by`,
  );
  return new Map(rows.map((r) => [r.claimed_by, r.n]));
}

/** Takes the API's listener down (open connections cut); `restore()` listens again on the same port. */
export async function apiOutage(api: TestApi): Promise<{ restore(): Promise<void> }> {
  const server = api.app.server;
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  return {
    restore: () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      }),
  };
}
