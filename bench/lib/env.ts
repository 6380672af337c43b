import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync, type Dirent } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SfwClient } from '@session-framework/sdk';
import { createDb, type Db } from '../../src/store/db.js';
import { ensureDatabase, startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/store/embedded.js';
import { migrate } from '../../src/store/migrate.js';
import { ROOT } from './report.js';

/**
 * The real pieces a bench part runs against: one embedded Postgres in a temp folder, a database per part,
 * the API and runners as separate `sfw` processes (as deployed), spoken to only through SfwClient.
 */

export const SMOKE = process.env.BENCH_SMOKE === '1';

export interface BenchPostgres {
  adminUrl: string;
  /** The postmaster: its process tree is the whole server (for CPU accounting); unknown for a server we did not start. */
  pid: number | undefined;
  version: string;
  /** A new empty database on the same server. */
  database(label: string): Promise<string>;
  /** A new database with our schema, and a pool on it. */
  sessionsDatabase(label: string): Promise<{ url: string; db: Db }>;
  stop(): Promise<void>;
}

let dbCounter = 0;

/**
 * One Postgres server for a bench run: a fresh embedded one in a temp folder, or the server behind
 * `adminUrl` (BENCH_DATABASE_URL; the test suite passes its own) where each part makes its own databases.
 */
export async function startBenchPostgres(adminUrl = process.env.BENCH_DATABASE_URL): Promise<BenchPostgres> {
  let embedded: EmbeddedPostgres | undefined;
  let dir: string | undefined;
  let pid: number | undefined;
  if (!adminUrl) {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-bench-pg-'));
    try {
      embedded = await startEmbeddedPostgres(dir);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    pid = Number((await readFile(path.join(dir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  }
  const url = adminUrl ?? embedded!.url;
  const admin = createDb({ connectionString: url, max: 2 });
  const { rows } = await admin.query<{ server_version: string }>('SHOW server_version');
  await admin.end();
  const database = (label: string) =>
    ensureDatabase(
      url,
      `bench_${label.replace(/\W/g, '_')}_${process.pid}_${Date.now().toString(36)}_${dbCounter++}`,
    );
  return {
    adminUrl: url,
    pid,
    version: rows[0]?.server_version ?? 'unknown',
    database,
    async sessionsDatabase(label) {
      const dbUrl = await database(label);
      const db = createDb({ connectionString: dbUrl, max: 10, applicationName: 'sfw-bench' });
      await migrate(db);
      return { url: dbUrl, db };
    },
    async stop() {
      await embedded?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Newest modification time of the files under `dir` (0 when it does not exist). */
function newestMtime(dir: string): number {
  let newest = 0;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

let chosenMode: 'dist' | 'src' | undefined;

/**
 * How `sfw` is started: the built dist/ as users run it, when it is at least as new as src/; otherwise
 * src/ through tsx. BENCH_SFW=dist or BENCH_SFW=src forces one.
 */
export function sfwCommand(args: string[]): { cmd: string; argv: string[] } {
  // BENCH_NODE_ARGS: extra node flags for the sfw processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  if (sfwMode() === 'src') {
    return {
      cmd: process.execPath,
      argv: [...nodeArgs, '--import', 'tsx', path.join(ROOT, 'bench', 'lib', 'sfw-src.ts'), ...args],
    };
  }
  return { cmd: process.execPath, argv: [...nodeArgs, path.join(ROOT, 'bin', 'sfw.js'), ...args] };
}

export function sfwMode(): 'dist' | 'src' {
  const forced = process.env.BENCH_SFW;
  chosenMode ??=
    forced === 'src' || forced === 'dist'
      ? forced
      : existsSync(path.join(ROOT, 'dist', 'cli', 'main.js')) &&
          newestMtime(path.join(ROOT, 'dist')) >= newestMtime(path.join(ROOT, 'src'))
        ? 'dist'
        : 'src';
  return chosenMode;
}

export interface Proc {
  pid: number;
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after the deadline. */
  stop(deadlineMs?: number): Promise<number | null>;
}

export function spawnSfw(args: string[], env: Record<string, string>): Proc {
  const { cmd, argv } = sfwCommand(args);
  const child = spawn(cmd, argv, {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    pid: child.pid ?? 0,
    child,
    output: () => out,
    async stop(deadlineMs = 30_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface BenchApi {
  url: string;
  proc: Proc;
  client: SfwClient;
  runnerClient: SfwClient;
  stop(): Promise<void>;
}

/** Starts `sfw api` on a free port against the given database and waits until it answers. */
export async function startApiProcess(
  databaseUrl: string,
  env: Record<string, string> = {},
): Promise<BenchApi> {
  const proc = spawnSfw(['api'], {
    DATABASE_URL: databaseUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    // The bench is the only client; the per-client rate limit would measure itself.
    RATE_LIMIT_PER_SEC: '0',
    ...env,
  });
  const deadline = Date.now() + 60_000;
  let url: string | undefined;
  while (!url) {
    const m = /listening on (http:\/\/[\d.:]+)/.exec(proc.output());
    if (m) url = m[1];
    else if (proc.child.exitCode !== null) throw new Error(`sfw api exited: ${proc.output()}`);
    else if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`sfw api did not start in 60 s: ${proc.output()}`);
    } else await new Promise((r) => setTimeout(r, 50));
  }
  const client = new SfwClient({ baseUrl: url, retries: 2, connections: 32 });
  const runnerClient = new SfwClient({ baseUrl: url, retries: 0, connections: 64 });
  await client.health();
  return {
    url,
    proc,
    client,
    runnerClient,
    async stop() {
      await client.close();
      await runnerClient.close();
      await proc.stop();
    },
  };
}

export interface RunnerOptions {
  apiUrl: string;
  runnerId: string;
  maxConcurrency: number;
  sessionsDir?: string;
  pollIntervalMs?: number;
  env?: Record<string, string>;
}

export const BENCH_SESSIONS_DIR = path.join(ROOT, 'bench', 'sessions');

/** Starts one `sfw runner` process. */
export function startRunnerProcess(o: RunnerOptions): Proc {
  return spawnSfw(['runner'], {
    API_BASE_URL: o.apiUrl,
    RUNNER_ID: o.runnerId,
    MAX_CONCURRENCY: String(o.maxConcurrency),
    POLL_INTERVAL_MS: String(o.pollIntervalMs ?? 5000),
    SESSIONS_DIR: o.sessionsDir ?? BENCH_SESSIONS_DIR,
    ...(process.env.CHROMIUM_PATH ? { CHROMIUM_PATH: process.env.CHROMIUM_PATH } : {}),
    ...o.env,
  });
}

/** Waits (bounded) until `check` is true, failing with `what` and any extra context. */
export async function until(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 60_000,
  intervalMs = 20,
  context: () => string = () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ${context()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
