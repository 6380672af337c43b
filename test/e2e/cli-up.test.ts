import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SfwClient } from '@session-framework/sdk';
import { waitFor } from '../helpers/wait.js';
import { freePort, killTagged, spawnSfw, taggedProcesses, type SfwProcess } from '../helpers/runner.js';

/** A new user's first minutes: `sfw up` in a fresh folder, `sfw run flow.json`, Ctrl-C. */

let site: Server;
let siteUrl: string;
let dir: string;
let up: SfwProcess | undefined;

beforeAll(async () => {
  site = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><title>shop</title><h1>Hello from the shop</h1><ul><li>a</li><li>b</li></ul>');
  });
  await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-up-'));
});
afterAll(async () => {
  if (up) await killTagged(up.tag);
  await new Promise((r) => site.close(r));
  await rm(dir, { recursive: true, force: true });
});

describe('sfw up + sfw run', () => {
  it('starts Postgres, the API and a runner; runs a flow; Ctrl-C stops everything', async () => {
    const port = await freePort();
    const apiUrl = `http://127.0.0.1:${port}`;
    up = spawnSfw(
      ['up', '--port', String(port), '--max-concurrency', '2'],
      { DATA_DIR: dir, LOG_LEVEL: 'warn' },
      { detached: true },
    );
    await up.waitForOutput(
      /Session Framework is up: API and dashboard at http:\/\/127\.0\.0\.1:\d+\/, runner \S+ serving/,
      90_000,
    );
    expect(up.output()).toContain(`${apiUrl}/`);

    const flowFile = path.join(dir, 'flow.json');
    await writeFile(
      flowFile,
      JSON.stringify({
        steps: [
          { action: 'goto', url: siteUrl },
          { action: 'extract', selector: 'h1', as: 'title' },
          { action: 'extract', selector: 'li', as: 'items', all: true },
        ],
      }),
    );
    const run = spawnSfw(['run', flowFile, '--json'], { API_BASE_URL: apiUrl });
    expect(await run.exited).toBe(0);
    const session = JSON.parse(run.output().trim().split('\n').at(-1)!) as {
      status: string;
      result: { extracted: Record<string, unknown>; steps: { action: string; ok: boolean }[] };
      claimedBy: string;
    };
    expect(session.status).toBe('succeeded');
    expect(session.result.extracted).toEqual({ title: 'Hello from the shop', items: ['a', 'b'] });
    expect(session.result.steps.map((s) => s.action)).toEqual(['goto', 'extract', 'extract']);

    const client = new SfwClient({ baseUrl: apiUrl, retries: 0 });
    try {
      const runners = await client.runners();
      expect(runners).toHaveLength(1);
      expect(runners[0]).toMatchObject({ status: 'running', maxConcurrency: 2, totalSessionsExecuted: 1 });
    } finally {
      await client.close();
    }

    // Ctrl-C (SIGINT to the whole process group) while a session runs: the runner drains it before the
    // API stops, so the waiting `sfw run` still gets its result.
    const slowFile = path.join(dir, 'slow.json');
    await writeFile(
      slowFile,
      JSON.stringify({
        steps: [
          { action: 'goto', url: siteUrl },
          { action: 'waitFor', ms: 1500 },
          { action: 'extract', selector: 'h1', as: 'title' },
        ],
      }),
    );
    const slow = spawnSfw(['run', slowFile, '--json'], { API_BASE_URL: apiUrl });
    const watch = new SfwClient({ baseUrl: apiUrl, retries: 0 });
    try {
      await waitFor(async () => (await watch.listSessions({ status: 'running' })).items.length === 1, {
        what: 'the slow flow running',
      });
    } finally {
      await watch.close();
    }
    process.kill(-up.child.pid!, 'SIGINT');
    expect(await slow.exited).toBe(0);
    expect(JSON.parse(slow.output().trim().split('\n').at(-1)!)).toMatchObject({
      status: 'succeeded',
      result: { extracted: { title: 'Hello from the shop' } },
    });
    expect(await up.exited).toBe(0);
    expect(up.output()).toMatch(/draining the runner[\s\S]*stopping the API/);
    // Postgres, the API and Chromium all belong to the tagged process tree: none may be left.
    await waitFor(async () => (await taggedProcesses(up!.tag)).length === 0, {
      timeoutMs: 15_000,
      what: 'no process of sfw up left',
    });
  });
});
