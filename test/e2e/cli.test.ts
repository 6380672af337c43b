import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SfwClient } from '@session-framework/sdk';
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

  it('ends quietly with code 0 when the reader of its output goes away (sfw status | head -1)', async () => {
    const bigInput = path.join(dataDir, 'big-input.json');
    await writeFile(bigInput, JSON.stringify({ text: 'x'.repeat(300_000) }));
    const big = (await sfw(['enqueue', 'cli-big', '--input-file', bigInput, '--json'], client)).stdout;
    const bigId = (JSON.parse(big) as { ids: string[] }).ids[0]!;
    const queued = (await sfw(['enqueue', 'cli-pipe', '--count', '3', '--json'], client)).stdout;
    const [q1, q2, q3] = (JSON.parse(queued) as { ids: string[] }).ids;
    const waits = path.join(dataDir, 'pipe-waits.json');
    await writeFile(waits, JSON.stringify({ type: 'cli-pipe-unserved' }));
    // A reader gone before the first line, and one that stops after its first chunk of a long output;
    // commands that go on talking to the API after the output failed (cancel, run) end as they would.
    const cases: [string[], 'closed' | 'first-chunk', number][] = [
      [['status'], 'closed', 0],
      [['sessions', firstId], 'closed', 0],
      [['sessions', '--limit', '5'], 'closed', 0],
      [['sessions', bigId, '--json'], 'first-chunk', 0],
      [['cancel', q1!, q2!, q3!], 'closed', 0],
      [['run', waits, '--wait-ms', '200', '--cancel-on-exit'], 'closed', 2],
    ];
    for (const [args, reader, expected] of cases) {
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...client },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      if (reader === 'closed') child.stdout.destroy();
      else child.stdout.once('data', () => child.stdout.destroy());
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code, `${args.join(' ')}: ${stderr}`).toBe(expected);
      expect(stderr, args.join(' ')).not.toMatch(/EPIPE|\n\s+at /);
    }
    // The commands did their work all the same.
    const api = new SfwClient({ baseUrl: client.API_BASE_URL!, token: API_TOKEN, retries: 0 });
    try {
      for (const id of [q1!, q2!, q3!]) expect((await api.getSession(id)).status).toBe('cancelled');
    } finally {
      await api.close();
    }
  });

  it('enqueues with the session flags of sfw run: --retry-on, --trace, --screenshot, --timeout-ms', async () => {
    const r = await sfw(
      [
        'enqueue',
        'cli-flags',
        '--max-attempts',
        '3',
        '--retry-on',
        'error,failed',
        '--trace',
        'always',
        '--screenshot',
        'off',
        '--timeout-ms',
        '5000',
        '--json',
      ],
      client,
    );
    expect(r.code, r.stderr).toBe(0);
    const id = (JSON.parse(r.stdout) as { ids: string[] }).ids[0]!;
    const shown = JSON.parse((await sfw(['sessions', id, '--json'], client)).stdout) as Record<
      string,
      unknown
    >;
    expect(shown).toMatchObject({
      maxAttempts: 3,
      retryOn: ['error', 'failed'],
      timeoutMs: 5000,
      artifactOptions: { screenshot: 'off', trace: 'always' },
    });
    // The help says which outcomes spend the attempts.
    const help = await sfw(['enqueue', '--help']);
    expect(help.stdout).toMatch(/--max-attempts <n>[\s\S]*by default an error[\s\S]*not a failed flow/);
    for (const command of ['enqueue', 'run']) {
      const text = (await sfw([command, '--help'])).stdout;
      for (const flag of ['--retry-on', '--trace', '--screenshot', '--timeout-ms'])
        expect(text, command).toContain(flag);
    }
    const bad = await Promise.all([
      sfw(['enqueue', 'x', '--retry-on', 'sometimes'], client),
      sfw(['enqueue', 'x', '--trace', 'maybe'], client),
    ]);
    expect(bad.map((b) => b.code)).toEqual([2, 2]);
    expect(bad[0].stderr).toContain('--retry-on');
    expect(bad[1].stderr).toContain('--trace');
  });

  it('shows a session whole: attempt history, each step with its target, artifacts and how to download them', async () => {
    const runner = new SfwClient({ baseUrl: client.API_BASE_URL!, token: RUNNER_TOKEN, retries: 0 });
    const api = new SfwClient({ baseUrl: client.API_BASE_URL!, token: API_TOKEN, retries: 0 });
    try {
      const steps = [
        { action: 'goto', url: 'https://shop.example/login' },
        { action: 'fill', selector: '#email', value: 'a@example.com' },
        { action: 'fill', selector: '#password', value: 'hunter2' },
        { action: 'extract', selector: 'h1', as: 'title' },
      ];
      // A runner's first word is a heartbeat naming the types it serves.
      await runner.heartbeat('cli-steps-runner', {
        activeSessions: 0,
        maxConcurrency: 1,
        sessions: [],
        types: ['cli-steps'],
      });
      const s = await api.createSession({ type: 'cli-steps', input: { steps }, maxAttempts: 2 });
      const claimOne = async () => {
        let got;
        await waitFor(
          async () => {
            got = (await runner.claim('cli-steps-runner', { slots: 1, types: ['cli-steps'] })).sessions[0];
            return got !== undefined;
          },
          { timeoutMs: 10_000, what: 'a claim of the cli-steps session' },
        );
        return got as unknown as { id: string; leaseToken: string };
      };
      const first = await claimOne();
      await runner.complete(first.id, {
        leaseToken: first.leaseToken,
        status: 'error',
        errorMessage: 'browser crashed',
      });
      const second = await claimOne();
      await runner.uploadArtifact(
        second.id,
        'console.log',
        second.leaseToken,
        Buffer.from('hello\n'),
        'text/plain',
      );
      await runner.complete(second.id, {
        leaseToken: second.leaseToken,
        status: 'failed',
        errorMessage: 'step 3 (fill): timeout',
        result: {
          extracted: {},
          steps: [
            { action: 'goto', ok: true, ms: 120 },
            { action: 'fill', ok: true, ms: 30 },
            { action: 'fill', ok: false, ms: 5000, error: 'timeout' },
          ],
        },
      });
      const shown = await sfw(['sessions', s.id], client);
      expect(shown.code, shown.stderr).toBe(0);
      const text = shown.stdout;
      expect(text).toContain(`session ${s.id}: failed (attempt 2 of 2)`);
      expect(text).toMatch(/attempts:\n\s+ATTEMPT\s+STATUS\s+RUNNER/);
      expect(text).toMatch(/^\s+1\s+error\s+cli-steps-runner\s.*browser crashed$/m);
      expect(text).toMatch(/^\s+2\s+failed\s+cli-steps-runner\s.*step 3 \(fill\): timeout$/m);
      // The two fill steps told apart by their selectors.
      expect(text).toMatch(/^\s+1\s+goto\s+https:\/\/shop\.example\/login\s+ok\s+120/m);
      expect(text).toMatch(/^\s+2\s+fill\s+#email\s+ok\s+30/m);
      expect(text).toMatch(/^\s+3\s+fill\s+#password\s+failed\s+5000\s+timeout/m);
      expect(text).not.toContain('hunter2');
      expect(text).toContain(`sfw artifacts get ${s.id} console.log`);

      const listed = await sfw(['artifacts', 'list', s.id], client);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toMatch(/console\.log\s+6\s+text\/plain/);
      const file = path.join(dataDir, 'downloaded.log');
      const got = await sfw(['artifacts', 'get', s.id, 'console.log', '-o', file], client);
      expect(got.code, got.stderr).toBe(0);
      expect(await readFile(file, 'utf8')).toBe('hello\n');
      const piped = await sfw(['artifacts', 'get', s.id, 'console.log', '-o', '-'], client);
      expect(piped.stdout).toBe('hello\n');
      const missing = await sfw(['artifacts', 'get', s.id, 'nope.png'], client);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/404/);

      // Cancelling it now cancels nothing: it says so and exits 1.
      const cancel = await sfw(['cancel', s.id], client);
      expect(cancel.code).toBe(1);
      expect(cancel.stderr).toContain(`session ${s.id} had already finished (failed): nothing cancelled`);
      expect((await api.getSession(s.id)).status).toBe('failed');
    } finally {
      await runner.close();
      await api.close();
    }
  });

  it('shows the session types each runner serves, and sfw run says when no live runner serves its type', async () => {
    const runner = new SfwClient({ baseUrl: client.API_BASE_URL!, token: RUNNER_TOKEN, retries: 0 });
    try {
      await runner.heartbeat('cli-types-runner', {
        activeSessions: 0,
        maxConcurrency: 2,
        sessions: [],
        types: ['cli-served', 'cli-other'],
      });
    } finally {
      await runner.close();
    }
    const status = await sfw(['status'], client);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/RUNNER\s.*\sTYPES/);
    expect(status.stdout).toMatch(/^cli-types-runner\s.*\scli-served,cli-other$/m);
    const json = JSON.parse((await sfw(['status', '--json'], client)).stdout) as {
      runners: { runnerId: string; types: string[] }[];
    };
    expect(json.runners.find((r) => r.runnerId === 'cli-types-runner')?.types).toEqual([
      'cli-served',
      'cli-other',
    ]);

    const file = path.join(dataDir, 'unserved.json');
    await writeFile(file, JSON.stringify({ type: 'cli-unserved' }));
    const r = await sfw(['run', file, '--wait-ms', '300', '--cancel-on-exit'], client);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /no live runner serves type "cli-unserved" \(live runners serve: .*cli-other, cli-served/,
    );
  });

  it('sfw enqueue warns on stderr of a type no runner registered, refuses bad input, sfw status lists types', async () => {
    const runner = new SfwClient({ baseUrl: client.API_BASE_URL!, token: RUNNER_TOKEN, retries: 0 });
    try {
      await runner.heartbeat('cli-typed-runner', { activeSessions: 0, maxConcurrency: 1, sessions: [] });
      await runner.registerTypes('cli-typed-runner', {
        types: [
          {
            name: 'cli-typed',
            schema: { type: 'object', properties: { url: { type: 'string' } }, required: ['url'] },
          },
          { name: 'cli-loose', schema: null, note: 'no input schema: any input is accepted' },
        ],
      });
    } finally {
      await runner.close();
    }
    const unknown = await sfw(['enqueue', 'cli-nobody', '--count', '3'], client);
    expect(unknown.code, unknown.stderr).toBe(0);
    expect(unknown.stderr.match(/warning: no runner has registered type "cli-nobody"/g)).toHaveLength(1);
    const good = await sfw(['enqueue', 'cli-typed', '--input', '{"url":"https://a.test/"}'], client);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stderr).not.toContain('warning');
    const bad = await sfw(['enqueue', 'cli-typed', '--input', '{"url":1}'], client);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('body.input.url');
    const status = await sfw(['status'], client);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^TYPE\s+INPUT SCHEMA\s+RUNNERS\s+LIVE\s+NOTE$/m);
    expect(status.stdout).toMatch(/^flow\s+built in\s+\d+\s+\d+/m);
    expect(status.stdout).toMatch(/^cli-typed\s+[0-9a-f]{12}\s+1\s+1\s*$/m);
    expect(status.stdout).toMatch(/^cli-loose\s+none\s+1\s+1\s+no input schema: any input is accepted$/m);
    const types = await sfw(['types'], client);
    expect(types.code, types.stderr).toBe(0);
    expect(types.stdout).toMatch(/^cli-typed\s+[0-9a-f]{12}\s+1\s+1\s*$/m);
    const one = await sfw(['types', 'cli-typed'], client);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/^cli-typed-runner\s+running\s+\S+\s+[0-9a-f]{12}$/m);
    expect(one.stdout).toContain('"required": [\n    "url"\n  ]');
    const none = await sfw(['types', 'cli-nobody'], client);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('no runner has registered type "cli-nobody"');
    const json = JSON.parse((await sfw(['status', '--json'], client)).stdout) as {
      types: { name: string; runners: { id: string }[] }[];
    };
    expect(json.types.find((t) => t.name === 'cli-typed')?.runners.map((r) => r.id)).toEqual([
      'cli-typed-runner',
    ]);
  });

  it('sfw cancel of a session that had already finished says so and exits 1', async () => {
    const runner = new SfwClient({ baseUrl: client.API_BASE_URL!, token: RUNNER_TOKEN, retries: 0 });
    const api = new SfwClient({ baseUrl: client.API_BASE_URL!, token: API_TOKEN, retries: 0 });
    try {
      await runner.heartbeat('cli-done-runner', {
        activeSessions: 0,
        maxConcurrency: 1,
        sessions: [],
        types: ['cli-done'],
      });
      const s = await api.createSession({ type: 'cli-done' });
      const { sessions } = await runner.claim('cli-done-runner', { slots: 1, types: ['cli-done'] });
      await runner.complete(s.id, { leaseToken: sessions[0]!.leaseToken, status: 'succeeded' });
      const queued = await api.createSession({ type: 'cli-done-queued' });
      const r = await sfw(['cancel', s.id, queued.id], client);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`session ${s.id} had already finished (succeeded): nothing cancelled`);
      expect(r.stdout).toContain(`${queued.id}: cancelled`);
      expect((await api.getSession(s.id)).status).toBe('succeeded');
      const alone = await sfw(['cancel', queued.id], client);
      expect(alone.code).toBe(1);
      expect(alone.stderr).toContain('had already finished (cancelled)');
    } finally {
      await runner.close();
      await api.close();
    }
  });

  it('sfw run tells what becomes of its session when it stops early, and cancels it with --cancel-on-exit', async () => {
    const file = path.join(dataDir, 'waits.json');
    await writeFile(file, JSON.stringify({ type: 'cli-waits' }));
    const api = new SfwClient({ baseUrl: client.API_BASE_URL!, token: API_TOKEN, retries: 0 });
    const idOf = (stderr: string) => /enqueued ([0-9a-f-]{36})/.exec(stderr)?.[1] ?? '';
    try {
      // Gives up after --wait-ms: exit 2, the session stays queued, and how to cancel it.
      const gaveUp = await sfw(['run', file, '--wait-ms', '300', '--timeout-ms', '5000', '--json'], client);
      expect(gaveUp.code).toBe(2);
      const kept = (JSON.parse(gaveUp.stdout) as { id: string }).id;
      expect(gaveUp.stderr).toContain(`session ${kept} stays queued; cancel it with: sfw cancel ${kept}`);
      expect(JSON.parse(gaveUp.stdout)).toMatchObject({ id: kept, status: 'queued', timeoutMs: 5000 });
      expect((await api.getSession(kept)).status).toBe('queued');
      const cancelled = await sfw(['run', file, '--wait-ms', '300', '--cancel-on-exit'], client);
      expect(cancelled.code).toBe(2);
      expect(cancelled.stderr).toContain(`cancelled session ${idOf(cancelled.stderr)}`);
      expect((await api.getSession(idOf(cancelled.stderr))).status).toBe('cancelled');

      // Ctrl-C while waiting: exit 130, the same words; --cancel-on-exit cancels.
      for (const cancel of [false, true]) {
        const child = spawn(
          process.execPath,
          [BIN, 'run', file, '--timeout-ms', '5000', ...(cancel ? ['--cancel-on-exit'] : [])],
          {
            cwd: ROOT,
            env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...client },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
        await waitFor(() => stderr.includes('waiting…'), { timeoutMs: 30_000, what: 'sfw run to wait' });
        child.kill('SIGINT');
        expect(await exited, stderr).toBe(130);
        const id = idOf(stderr);
        // The old meaning of --timeout-ms (the wait) is pointed to its new name.
        expect(stderr).toContain('how long sfw run waits is --wait-ms');
        expect(stderr).toContain(`interrupted: sfw run stopped waiting for session ${id}`);
        if (cancel) {
          expect(stderr).toContain(`cancelled session ${id}`);
          expect((await api.getSession(id)).status).toBe('cancelled');
        } else {
          expect(stderr).toContain(`session ${id} stays queued; cancel it with: sfw cancel ${id}`);
          expect((await api.getSession(id)).status).toBe('queued');
        }
        expect(stderr).not.toMatch(/\n\s+at /);
      }
    } finally {
      await api.close();
    }
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
      // The flags' and settings' table: a flag or setting is followed by two spaces at least or by the end
      // of its line (its description then starts on the next one), never by its description's first word.
      const rows = r.stdout.split('\n').filter((l) => /^ {2}-/.test(l));
      expect(rows.length, names[i]).toBeGreaterThan(0);
      for (const row of rows) {
        const m = /^ {2}((?:-\w, )?--[a-z0-9-]+(?: <[\w-]+>)?(?: \/ [A-Z0-9_]+)?)(.*)$/.exec(row);
        expect(m, `${names[i]}: ${row}`).not.toBeNull();
        expect(m![2], `${names[i]}: ${row}`).toMatch(/^$|^ {2,}\S/);
      }
      for (const line of r.stdout.split('\n').slice(3)) expect(line.length, line).toBeLessThanOrEqual(100);
    });
    const api = results[names.indexOf('api')]!.stdout;
    expect(api).toMatch(
      /^ {2}--stale-session-timeout-ms \/ STALE_SESSION_TIMEOUT_MS\n {4,}Lease length: a running session/m,
    );
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
