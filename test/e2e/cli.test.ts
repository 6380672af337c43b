import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb } from '../../src/store/db.js';
import { ensureDatabase } from '../../src/store/embedded.js';
import { waitFor } from '../helpers/wait.js';
import { freePort } from '../helpers/ports.js';

/** The CLI as a user types it: `node bin/sfw.js …` against the built dist/ (npm test builds first). */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin/sfw.js');
const API_TOKEN = 'cli-api-token-5f1c9a';
const RUNNER_TOKEN = 'cli-runner-token-8e2d7b';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one CLI command to completion (bounded in time) with a clean environment plus `env`. */
function sfw(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sfw ${args.join(' ')} did not finish in ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

let dataDir = '';
let port = 0;
let apiProc: ChildProcess | undefined;
let apiOut = '';
let client: Record<string, string> = {};

beforeAll(async () => {
  if (!existsSync(path.join(ROOT, 'dist/cli/main.js')))
    throw new Error('dist/ is missing: run `npm run build` before the e2e tests (npm test does)');
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-cli-'));
  port = await freePort();
  apiProc = spawn(process.execPath, [BIN, 'api', '--port', String(port), '--data-dir', dataDir], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      API_TOKEN,
      RUNNER_TOKEN,
      LOG_LEVEL: 'trace',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  apiProc.stdout!.on('data', (d: Buffer) => (apiOut += d.toString()));
  apiProc.stderr!.on('data', (d: Buffer) => (apiOut += d.toString()));
  await waitFor(() => apiOut.includes('listening on') || apiProc?.exitCode !== null, {
    timeoutMs: 90_000,
    intervalMs: 100,
    what: 'sfw api to listen',
  });
  expect(apiProc.exitCode, apiOut).toBeNull();
  client = { API_BASE_URL: `http://127.0.0.1:${port}`, API_TOKEN };
});

afterAll(async () => {
  if (apiProc && apiProc.exitCode === null) {
    apiProc.kill('SIGKILL');
    // The embedded server outlives a killed owner; stop it through its pid file.
    const pid = Number(
      (await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0],
    );
    if (pid > 0) process.kill(pid, 'SIGINT');
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('sfw against a running `sfw api`', () => {
  let firstId = '';

  it('enqueues one session and prints it', async () => {
    const r = await sfw(['enqueue', 'cli-demo', '--input', '{"a":1}', '--priority', '5', '--json'], client);
    expect(r.code, r.stderr).toBe(0);
    const { ids } = JSON.parse(r.stdout) as { ids: string[] };
    expect(ids).toHaveLength(1);
    firstId = ids[0]!;
    const shown = await sfw(['sessions', firstId, '--json'], client);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({
      id: firstId,
      status: 'queued',
      priority: 5,
      input: { a: 1 },
    });
  });

  it('enqueues copies in batches', async () => {
    const r = await sfw(['enqueue', 'cli-demo', '--count', '25'], client);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toContain('25');
  });

  it('lists sessions with filters, as a table and as JSON, and shows one', async () => {
    const table = await sfw(['sessions', '--type', 'cli-demo', '--limit', '5'], client);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/queued/);
    const json = await sfw(['sessions', '--status', 'queued', '--limit', '100', '--json'], client);
    expect(json.code, json.stderr).toBe(0);
    const page = JSON.parse(json.stdout) as { items: { id: string }[] };
    expect(page.items).toHaveLength(26);
    const one = await sfw(['sessions', firstId, '--json'], client);
    expect(one.code, one.stderr).toBe(0);
    expect((JSON.parse(one.stdout) as { id: string }).id).toBe(firstId);
    const missing = await sfw(['sessions', '01900000-0000-7000-8000-000000000000'], client);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/404|not found/);
  });

  it('shows the status: queue depth, runners and alerts', async () => {
    const r = await sfw(['status'], client);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/queued/i);
    const json = await sfw(['status', '--json'], client);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.stringify(JSON.parse(json.stdout))).toContain('26');
  });

  it('cancels a queued session', async () => {
    const r = await sfw(['cancel', firstId, '--json'], client);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('cancelled');
  });

  it('says which variable to set when the token is missing or wrong', async () => {
    const none = await sfw(['status'], { API_BASE_URL: client.API_BASE_URL! });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('401');
    expect(none.stderr).toContain('API_TOKEN');
    const wrong = await sfw(['sessions'], {
      API_BASE_URL: client.API_BASE_URL!,
      API_TOKEN: 'wrong-cli-token',
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('401');
  });

  it('never writes the tokens into the API logs', () => {
    expect(apiOut.length).toBeGreaterThan(0);
    expect(apiOut).not.toContain(API_TOKEN);
    expect(apiOut).not.toContain(RUNNER_TOKEN);
    expect(apiOut).not.toContain('wrong-cli-token');
  });

  it('stops cleanly on SIGTERM, embedded Postgres included', async () => {
    const pid = Number((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    const exited = new Promise<number | null>((r) => apiProc!.once('exit', (code) => r(code)));
    apiProc!.kill('SIGTERM');
    expect(await exited).toBe(0);
    await waitFor(
      () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      { timeoutMs: 20_000, what: 'embedded Postgres to stop' },
    );
  });
});

describe('help and bad input', () => {
  it('prints --help for every command, exit 0', async () => {
    const top = await sfw(['--help']);
    expect(top.code).toBe(0);
    const names = [...top.stdout.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1]!);
    for (const n of ['up', 'api', 'runner', 'migrate', 'enqueue', 'run', 'sessions', 'status', 'cancel'])
      expect(names).toContain(n);
    const results = await Promise.all(names.map((n) => sfw([n, '--help'])));
    results.forEach((r, i) => {
      expect(r.code, names[i]).toBe(0);
      expect(r.stdout, names[i]).toContain(`Usage: sfw ${names[i]}`);
      expect(r.stdout, names[i]).toContain('--help');
    });
  });

  it('refuses unknown commands and flags with exit 2, naming them', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['sessions', '--bogus'], /--bogus/],
      [['enqueue', 'x', '--priority', 'high'], /--priority/],
      [['sessions', '--limit', 'abc'], /--limit/],
      [['enqueue', 'x', '--input', '{bad'], /--input/],
      [['enqueue'], /<type>/],
      [['api', '--port', '99999'], /--port/],
      [['status', '--api-base-url', 'not a url'], /--api-base-url/],
    ];
    const results = await Promise.all(cases.map(([args]) => sfw(args, client)));
    results.forEach((r, i) => {
      const [args, re] = cases[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(re);
      expect(r.stderr, args.join(' ')).not.toMatch(/\n\s+at /);
    });
  });

  it('names the variable for bad environment values', async () => {
    const cases: [Record<string, string>, string[], string][] = [
      [{ PORT: 'abc' }, ['api'], 'PORT'],
      [{ LOG_LEVEL: 'loud' }, ['api'], 'LOG_LEVEL'],
      [{ STALE_SESSION_TIMEOUT_MS: '5' }, ['api'], 'STALE_SESSION_TIMEOUT_MS'],
      [{ RATE_LIMIT_PER_SEC: '-3' }, ['api'], 'RATE_LIMIT_PER_SEC'],
      [{ API_BASE_URL: 'nope' }, ['status'], 'API_BASE_URL'],
      [{ DATABASE_URL: 'mysql://x' }, ['migrate'], 'DATABASE_URL'],
      [{ HOST: '0.0.0.0' }, ['api', '--data-dir', path.join(os.tmpdir(), 'sfw-never-started')], 'API_TOKEN'],
    ];
    const results = await Promise.all(cases.map(([env, args]) => sfw(args, env)));
    results.forEach((r, i) => {
      const [env, , name] = cases[i]!;
      expect(r.code, JSON.stringify(env)).toBe(2);
      expect(r.stderr, JSON.stringify(env)).toContain(name);
    });
  });

  it('explains an unreachable API', async () => {
    const closed = await freePort();
    const r = await sfw(['status'], { API_BASE_URL: `http://127.0.0.1:${closed}` }, 30_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach the API/);
    expect(r.stderr).toMatch(/API_BASE_URL/);
  });
});

describe('sfw migrate', () => {
  it('applies each migration once under three concurrent processes', async () => {
    const url = await ensureDatabase(
      inject('pgAdminUrl'),
      `t_cli_migrate_${process.pid}_${Date.now().toString(36)}`,
    );
    const runs = await Promise.all([1, 2, 3].map(() => sfw(['migrate', '--database-url', url])));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const outputs = runs.map((r) => r.stdout.trim());
    expect(outputs.filter((o) => o.startsWith('applied:'))).toHaveLength(1);
    expect(outputs.filter((o) => o === 'database is up to date')).toHaveLength(2);
    const again = await sfw(['migrate', '--database-url', url]);
    expect(again.stdout.trim()).toBe('database is up to date');
    const db = createDb({ connectionString: url, max: 1 });
    try {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      expect(rows[0]!.n).toBeGreaterThanOrEqual(1);
      expect(outputs.find((o) => o.startsWith('applied:'))!.split(',')).toHaveLength(rows[0]!.n);
    } finally {
      await db.end();
    }
  });
});
