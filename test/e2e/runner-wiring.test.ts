import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { RUNNER_CONFIG_KEYS, startRunner } from '../../src/runner/main.js';
import { RUNNER_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';
import { silentLog } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';

/** startRunner as `sfw runner` wires it: session modules, Chromium or none, memory in runner_health. */

let api: TestApi;
let site: Server;
let siteUrl: string;
let dir: string;

beforeAll(async () => {
  api = await startTestApi('runner_wiring');
  site = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><h1>wired</h1>');
  });
  await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-wiring-'));
});
afterAll(async () => {
  await api.stop();
  await new Promise((r) => site.close(r));
  await rm(dir, { recursive: true, force: true });
});

function config(env: Record<string, string>) {
  return loadConfig(RUNNER_CONFIG_KEYS, {
    env: { API_BASE_URL: api.url, HEARTBEAT_INTERVAL_MS: '300', POLL_INTERVAL_MS: '500', ...env },
  });
}

describe('startRunner', () => {
  it('without Chromium serves the browser-free types, says how to get one, and leaves flows queued', async () => {
    const sessionsDir = path.join(dir, 'no-chromium');
    await mkdir(sessionsDir);
    await writeFile(
      path.join(sessionsDir, 'sleep.mjs'),
      `export { default } from ${JSON.stringify(path.resolve('test/fixtures/runner-sessions/sleep.mjs'))};`,
    );
    await writeFile(path.join(sessionsDir, 'broken.mjs'), 'export default { name: 42 };');
    const started = await startRunner(config({ RUNNER_ID: 'wired-nochrome', SESSIONS_DIR: sessionsDir }), {
      log: silentLog,
      fixedPollInterval: true,
      findChromium: () => undefined,
    });
    try {
      expect(started.chromium).toBeUndefined();
      expect(started.types).toEqual(['sleep']);
      expect(started.warnings.join('\n')).toMatch(
        /flow[\s\S]*No Chromium found[\s\S]*apt-get install -y chromium/,
      );
      expect(started.problems).toHaveLength(1);
      expect(started.problems[0]).toContain(path.join(sessionsDir, 'broken.mjs'));
      const flow = await api.client.createSession({
        type: 'flow',
        input: { steps: [{ action: 'goto', url: siteUrl }] },
      });
      const sleep = await api.client.createSession({ type: 'sleep', input: { ms: 10 } });
      expect((await api.client.waitUntilDone(sleep.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
      const claimsAfter = started.runner.claimRequests;
      await waitFor(() => started.runner.claimRequests > claimsAfter, { what: 'another claim round' });
      expect((await api.client.getSession(flow.id)).status).toBe('queued');
      await api.client.cancelSession(flow.id);
    } finally {
      expect(await started.stop()).toBe(0);
    }
  });

  it('refuses a RUNNER_ID the API would not accept, naming the variable', async () => {
    await expect(startRunner(config({ RUNNER_ID: 'my runner' }), { log: silentLog })).rejects.toThrow(
      /RUNNER_ID \(--runner-id\) "my runner" is not a valid runner id/,
    );
  });

  it('stops at start with a clear message when the API refuses RUNNER_TOKEN', async () => {
    const secured = await startTestApi('runner_wiring_auth', { auth: true });
    try {
      const cfg = loadConfig(RUNNER_CONFIG_KEYS, {
        env: {
          API_BASE_URL: secured.url,
          RUNNER_TOKEN: 'wrong',
          SESSIONS_DIR: 'test/fixtures/runner-sessions',
        },
      });
      await expect(startRunner(cfg, { log: silentLog, findChromium: () => undefined })).rejects.toThrow(
        /the API refused RUNNER_TOKEN \(HTTP 401\): set RUNNER_TOKEN/,
      );
      const ok = await startRunner(
        { ...cfg, runnerToken: RUNNER_TOKEN, runnerId: 'wired-auth' },
        { log: silentLog, findChromium: () => undefined },
      );
      expect(await ok.stop()).toBe(0);
      expect((await secured.client.runners()).map((r) => [r.runnerId, r.status])).toEqual([
        ['wired-auth', 'stopped'],
      ]);
    } finally {
      await secured.stop();
    }
  });

  it('refuses a CHROMIUM_PATH that is not an executable, naming the variable', async () => {
    await expect(
      startRunner(config({ CHROMIUM_PATH: '/nonexistent/chromium' }), { log: silentLog }),
    ).rejects.toThrow(ConfigError);
    await expect(
      startRunner(config({ CHROMIUM_PATH: '/nonexistent/chromium' }), { log: silentLog }),
    ).rejects.toThrow(/CHROMIUM_PATH=\/nonexistent\/chromium is not an executable/);
  });

  it('says which Chromium failed to start when the executable is not a working browser', async () => {
    const fake = path.join(dir, 'fake-chromium');
    await writeFile(fake, '#!/bin/sh\necho "this is not a browser" >&2\nexit 3\n', { mode: 0o755 });
    await expect(startRunner(config({ CHROMIUM_PATH: fake }), { log: silentLog })).rejects.toThrow(
      new RegExp(`Chromium at ${fake} failed to start: .*set CHROMIUM_PATH`),
    );
  });

  it('with Chromium runs a flow and reports browser memory and effective concurrency in runner_health', async () => {
    const started = await startRunner(config({ RUNNER_ID: 'wired-chrome', MAX_CONCURRENCY: '2' }), {
      log: silentLog,
      fixedPollInterval: true,
    });
    try {
      expect(started.types).toContain('flow');
      const s = await api.client.createSession({
        type: 'flow',
        input: {
          steps: [
            { action: 'goto', url: siteUrl },
            { action: 'extract', selector: 'h1', as: 'h' },
          ],
        },
      });
      const done = await api.client.waitUntilDone(s.id, { timeoutMs: 30_000 });
      expect(done.status).toBe('succeeded');
      expect((done.result as { extracted: unknown }).extracted).toEqual({ h: 'wired' });
      const h = await waitFor(
        async () => {
          const r = (await api.client.runners()).find((x) => x.runnerId === 'wired-chrome');
          return r && r.browserMemoryBytes !== null && r.browserMemoryBytes > 0 ? r : undefined;
        },
        { what: 'browser memory reported' },
      );
      expect(h.effectiveConcurrency).toBeGreaterThanOrEqual(1);
      expect(h.effectiveConcurrency).toBeLessThanOrEqual(2);
      expect(h.memoryRssBytes).toBeGreaterThan(0);
      expect(h.totalSessionsExecuted).toBe(1);
    } finally {
      expect(await started.stop()).toBe(0);
    }
  });
});
