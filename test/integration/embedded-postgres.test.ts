import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/store/embedded.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dirs: string[] = [];
const servers: EmbeddedPostgres[] = [];
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of servers) await s.stop().catch(() => {});
  // Servers adopted from killed processes are stopped through their pid files.
  for (const d of dirs) {
    const pid = await postmasterPid(d);
    if (pid && alive(pid)) process.kill(pid, 'SIGINT');
  }
  for (const d of dirs) {
    const pid = await postmasterPid(d);
    if (pid) await waitFor(() => !alive(pid), { timeoutMs: 20_000, what: `postgres ${pid} to stop` });
    await rm(d, { recursive: true, force: true });
  }
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'sfw-embedded-'));
  dirs.push(d);
  return d;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number(text.split('\n')[0]);
  return pid > 0 ? pid : undefined;
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

async function start(dir: string): Promise<EmbeddedPostgres> {
  const s = await startEmbeddedPostgres(dir);
  servers.push(s);
  return s;
}

async function stop(s: EmbeddedPostgres): Promise<void> {
  await s.stop();
  servers.splice(servers.indexOf(s), 1);
}

/** Starts the embedded server from a separate Node process, as `sfw up` would, and answers its URL. */
async function startInChild(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const script = path.join(dir, 'owner.mts');
  await writeFile(
    script,
    `import { startEmbeddedPostgres } from ${JSON.stringify(path.join(ROOT, 'src/store/embedded.ts'))};
const pg = await startEmbeddedPostgres(process.argv[2]);
process.stdout.write(JSON.stringify({ url: pg.url }) + '\\n');
setInterval(() => {}, 1000);
`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script, dir], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const line = await waitFor(() => out.split('\n').find((l) => l.startsWith('{')), {
    timeoutMs: 90_000,
    intervalMs: 100,
    what: `the child to start Postgres (stderr: ${err.slice(0, 500)})`,
  });
  return { child, url: (JSON.parse(line) as { url: string }).url };
}

describe('embedded Postgres', () => {
  it('starts, keeps data across a clean restart on the same port', async () => {
    const dir = await tempDir();
    const first = await start(dir);
    expect(first.owner).toBe(true);
    await query(first.url, 'CREATE TABLE kept (v text)');
    await query(first.url, `INSERT INTO kept VALUES ('across restarts')`);
    const pid = await postmasterPid(dir);
    await stop(first);
    expect(pid && alive(pid)).toBeFalsy();

    const second = await start(dir);
    expect(second.port).toBe(first.port);
    expect(await query(second.url, 'SELECT v FROM kept')).toEqual([{ v: 'across restarts' }]);
    await stop(second);
  });

  it('is not open to other local processes: a password of its own, readable by its owner only', async () => {
    const dir = await tempDir();
    const s = await start(dir);
    const file = path.join(dir, 'pg.password');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const password = (await readFile(file, 'utf8')).trim();
    expect(password.length).toBeGreaterThanOrEqual(32);
    expect(decodeURIComponent(new URL(s.url).password)).toBe(password);
    // The well-known password of a default install opens nothing.
    const guess = new URL(s.url);
    guess.password = 'postgres';
    await expect(query(guess.toString(), 'SELECT 1')).rejects.toMatchObject({ code: '28P01' });
    expect(await query(s.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    // A clean restart keeps the password.
    await stop(s);
    const again = await start(dir);
    expect(again.url).toBe(s.url);
  });

  it('gives a cluster still on the shared default password one of its own at its next start', async () => {
    const dir = await tempDir();
    const s = await start(dir);
    // As a cluster made by an earlier release: the shared password, and no file.
    await query(s.url, `ALTER ROLE postgres PASSWORD 'postgres'`);
    await rm(path.join(dir, 'pg.password'));
    await stop(s);
    const again = await start(dir);
    const password = (await readFile(path.join(dir, 'pg.password'), 'utf8')).trim();
    expect(password).not.toBe('postgres');
    expect(decodeURIComponent(new URL(again.url).password)).toBe(password);
    const guess = new URL(again.url);
    guess.password = 'postgres';
    await expect(query(guess.toString(), 'SELECT 1')).rejects.toMatchObject({ code: '28P01' });
  });

  it('adopts the server left running by a kill -9 of its owner process, data kept', async () => {
    const dir = await tempDir();
    const { child, url } = await startInChild(dir);
    await query(url, 'CREATE TABLE kept (v text)');
    await query(url, `INSERT INTO kept VALUES ('after kill -9')`);
    const serverPid = await postmasterPid(dir);
    expect(serverPid).toBeDefined();
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    // The server runs in its own process group: it outlives its killed owner.
    expect(alive(serverPid!)).toBe(true);

    const adopted = await start(dir);
    expect(adopted.owner).toBe(true);
    expect(await query(adopted.url, 'SELECT v FROM kept')).toEqual([{ v: 'after kill -9' }]);
    await stop(adopted);
    await waitFor(() => !alive(serverPid!), { timeoutMs: 20_000, what: 'the adopted server to stop' });

    const again = await start(dir);
    expect(await query(again.url, 'SELECT v FROM kept')).toEqual([{ v: 'after kill -9' }]);
    await stop(again);
  });

  it('starts over a stale postmaster.pid naming a dead process, data kept', async () => {
    const dir = await tempDir();
    const first = await start(dir);
    await query(first.url, 'CREATE TABLE kept (v text)');
    await query(first.url, `INSERT INTO kept VALUES ('stale pid')`);
    await stop(first);
    // A pid that surely is dead: a child that has exited.
    const gone = spawn(process.execPath, ['-e', '0']);
    const deadPid = gone.pid!;
    await new Promise((r) => gone.once('exit', r));
    expect(alive(deadPid)).toBe(false);
    const pidFile = path.join(dir, 'pg', 'postmaster.pid');
    await writeFile(pidFile, `${deadPid}\n${path.join(dir, 'pg')}\n1700000000\n${first.port}\n\n127.0.0.1\n`);

    const restarted = await start(dir);
    expect(await query(restarted.url, 'SELECT v FROM kept')).toEqual([{ v: 'stale pid' }]);
    expect(await postmasterPid(dir)).not.toBe(deadPid);
    await stop(restarted);
  });

  it('gives two data folders different ports, both serving at once', async () => {
    const [a, b] = await Promise.all([tempDir(), tempDir()]);
    const pa = await start(a);
    const pb = await start(b);
    expect(pa.port).not.toBe(pb.port);
    expect(await query<{ one: number }>(pa.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    expect(await query<{ one: number }>(pb.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await stop(pa);
    await stop(pb);
  });
});
