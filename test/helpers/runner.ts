import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { sleep } from '../../src/core/time.js';
import { SfwClient } from '../../src/sdk/client.js';
import { Runner } from '../../src/runner/runner.js';
import type { Executor, RunnerOptions } from '../../src/runner/types.js';
import type { Db } from '../../src/store/db.js';
import { RUNNER_TOKEN, type TestApi } from './api.js';

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

const CLI_ENTRY = fileURLToPath(new URL('./runner-cli.ts', import.meta.url));
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface SfwProcess {
  child: ChildProcess;
  /** A value in the process's environment: every process it starts (Chromium) carries it too. */
  tag: string;
  output(): string;
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<number | null>;
}

/** Spawns `sfw <args>` from source as its own process, with a tag to find its descendants by. */
export function spawnSfw(
  args: string[],
  env: Record<string, string | undefined>,
  opts: { detached?: boolean } = {},
): SfwProcess {
  const tag = randomUUID();
  const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env, SFW_PROCESS_TAG: tag },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, like a command started in a terminal: a signal to the group is Ctrl-C.
    detached: opts.detached ?? false,
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    tag,
    output: () => out,
    exited,
    waitForOutput: (re, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (re.test(out)) {
            cleanup();
            resolve();
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${re} in output:\n${out.slice(-3000)}`));
        }, timeoutMs);
        const onExit = () => {
          cleanup();
          if (re.test(out)) resolve();
          else reject(new Error(`process exited before ${re} appeared:\n${out.slice(-3000)}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', onExit);
        };
        listeners.add(check);
        child.once('exit', onExit);
        check();
      }),
  };
}

/** Live processes (not zombies) whose environment carries the tag: the process and all it started. */
export async function taggedProcesses(tag: string): Promise<{ pid: number; cmd: string }[]> {
  const found: { pid: number; cmd: string }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = await readFile(`/proc/${entry}/environ`, 'utf8');
      if (!environ.includes(`SFW_PROCESS_TAG=${tag}`)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (/\) Z /.test(stat)) continue;
      const cmd = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replace(/\0/g, ' ').slice(0, 200);
      found.push({ pid: Number(entry), cmd });
    } catch {
      /* gone, or not ours to read */
    }
  }
  return found;
}

/** Kills whatever of a test's processes is still alive (cleanup after a failed assertion). */
export async function killTagged(tag: string): Promise<void> {
  for (const p of await taggedProcesses(tag)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

export { freePort } from './ports.js';

/**
 * An `sfw runner` process with Chromium serving the API at `apiUrl` as remote-browser and live-view tests
 * want it: two slots, claims polled every second, heartbeats every 500 ms (live views start with the next
 * one), the fixture site on 127.0.0.1 reachable (`ALLOW_PRIVATE_TARGETS`, unless `env` says otherwise).
 */
export function spawnBrowserRunner(
  apiUrl: string,
  runnerId: string,
  chromiumPath: string,
  env: Record<string, string> = {},
): SfwProcess {
  return spawnSfw(['runner'], {
    API_BASE_URL: apiUrl,
    RUNNER_TOKEN,
    RUNNER_ID: runnerId,
    MAX_CONCURRENCY: '2',
    POLL_INTERVAL_MS: '1000',
    HEARTBEAT_INTERVAL_MS: '500',
    CHROMIUM_PATH: chromiumPath,
    ...(env.ALLOWED_TARGETS === undefined ? { ALLOW_PRIVATE_TARGETS: 'true' } : {}),
    ...env,
  });
}

/** Kills the processes at once, and what they started (their Chromium). */
export async function killAll(procs: readonly SfwProcess[]): Promise<void> {
  for (const p of procs) {
    p.child.kill('SIGKILL');
    await killTagged(p.tag);
  }
}
