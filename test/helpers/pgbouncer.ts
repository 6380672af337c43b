import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

/**
 * A real PgBouncer in transaction pooling mode in front of a Postgres server, as a deploy behind
 * Supabase's pooler or a PgBouncer sidecar has it: every transaction may land on another server
 * connection, session state (LISTEN, session advisory locks, SET) does not carry over, and at most
 * `poolSize` server connections serve each database and user.
 */

export interface PgBouncer {
  /** The backing URL with host and port replaced by PgBouncer's (same user, password, database). */
  url: string;
  port: number;
  /** `url` for another database on the same server (PgBouncer serves any database name). */
  urlFor(database: string): string;
  /** PgBouncer's log so far (for failure messages). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** Server connections per database and user (default_pool_size). */
  poolSize?: number;
  maxClientConn?: number;
  authType?: 'md5' | 'plain';
}

const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

/** The pgbouncer executable (PGBOUNCER_BIN, the Debian path, or PATH), or undefined when absent. */
export function pgbouncerBinary(): string | undefined {
  const explicit = process.env.PGBOUNCER_BIN;
  const candidates = explicit ? [explicit] : CANDIDATES;
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  if (explicit) return undefined;
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** PgBouncer refuses to run as root: as root it runs as `postgres` (created by the embedded server's code if absent). */
function runAs(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  try {
    return {
      uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
      gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
    };
  } catch (err) {
    throw new Error('running as root and there is no "postgres" user to run pgbouncer as', { cause: err });
  }
}

const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** Starts PgBouncer (transaction mode, 127.0.0.1, a free port) in front of the server of `backingUrl`. */
export async function startPgBouncer(backingUrl: string, opts: PgBouncerOptions = {}): Promise<PgBouncer> {
  const bin = pgbouncerBinary();
  if (!bin) throw new Error('pgbouncer is not installed (apt-get install pgbouncer, or set PGBOUNCER_BIN)');
  const backing = new URL(backingUrl);
  const user = decodeURIComponent(backing.username);
  const password = decodeURIComponent(backing.password);
  const host = backing.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const serverPort = backing.port || '5432';
  if (!user) throw new Error(`the backing URL names no user: ${backing.host}`);

  const dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-pgbouncer-'));
  const ids = runAs();
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  const userlist = path.join(dir, 'userlist.txt');
  const logFile = path.join(dir, 'pgbouncer.log');
  await writeFile(userlist, `${quote(user)} ${quote(password)}\n`, { mode: 0o600 });
  await writeFile(
    ini,
    [
      '[databases]',
      // Any database name the client asks for, on the backing server, as the client's user.
      `* = host=${host} port=${serverPort}`,
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      `auth_type = ${opts.authType ?? 'md5'}`,
      `auth_file = ${userlist}`,
      'pool_mode = transaction',
      `default_pool_size = ${opts.poolSize ?? 5}`,
      'min_pool_size = 0',
      'reserve_pool_size = 0',
      `max_client_conn = ${opts.maxClientConn ?? 500}`,
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${logFile}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      'server_login_retry = 1',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  await writeFile(logFile, '', { mode: 0o600 });
  if (ids) {
    await chmod(dir, 0o700);
    for (const f of [dir, ini, userlist, logFile]) await chown(f, ids.uid, ids.gid);
  }

  let stderr = '';
  const child: ChildProcess = spawn(bin, [ini], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(ids ?? {}),
  });
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let exitInfo: string | null = null;
  child.once('exit', (code, signal) => (exitInfo = `exited (code ${code ?? ''} signal ${signal ?? ''})`));
  child.once('error', (err) => (exitInfo = `could not start: ${err.message}`));

  const urlFor = (database: string) => {
    const u = new URL(backingUrl);
    u.hostname = '127.0.0.1';
    u.port = String(port);
    u.pathname = `/${database}`;
    return u.toString();
  };
  const url = urlFor(decodeURIComponent(backing.pathname.replace(/^\//, '')) || 'postgres');
  const log = async () => `${await readFile(logFile, 'utf8').catch(() => '')}${stderr}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM'); // immediate shutdown
      const killed = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killed);
    }
    await rm(dir, { recursive: true, force: true });
  };

  // Ready when a query goes through it to the server.
  const until = Date.now() + 20_000;
  let lastErr: unknown;
  for (;;) {
    if (exitInfo !== null) {
      const why = `pgbouncer ${exitInfo}: ${(await log()).trim().slice(-2000)}`;
      await stop();
      throw new Error(why);
    }
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      break;
    } catch (err) {
      lastErr = err;
      await c.end().catch(() => {});
    }
    if (Date.now() > until) {
      const why = `pgbouncer on 127.0.0.1:${port} did not pass a query to ${host}:${serverPort}: ${(lastErr as Error).message}; log: ${(await log()).trim().slice(-2000)}`;
      await stop();
      throw new Error(why);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, port, urlFor, log, stop };
}
