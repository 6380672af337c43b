import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flowSessionType } from '../../src/sessions/registry.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { startBrowserTypeRunner, type BrowserTypeRunner } from '../helpers/browser-runner.js';
import { waitFor } from '../helpers/wait.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';

/**
 * The synthetic-check loop end to end: a schedule every 2 s enqueues a flow, a real runner runs it in
 * Chromium against the fixture site, and the schedule's recent sessions show each outcome.
 */

let api: TestApi;
let site: FixtureServer;
let runner: BrowserTypeRunner;

beforeAll(async () => {
  api = await startTestApi('schedules-run', { schedules: true });
  site = await startFixtureServer();
  runner = await startBrowserTypeRunner(api, 'schedules-runner', flowSessionType());
});

afterAll(async () => {
  await runner?.stop();
  await site?.close();
  await api?.stop();
});

describe('a scheduled flow', () => {
  it('runs at each fire time and its recent sessions say when the check passes and when it fails', async () => {
    const check = (text: string) => ({
      type: 'flow',
      input: {
        steps: [
          { action: 'goto', url: `${site.url}/pages/simple.html` },
          { action: 'assert', selector: 'h1', text },
          { action: 'extract', selector: '#text', as: 'text' },
        ],
      },
      artifacts: { screenshot: 'off' as const },
    });
    const s = await api.client.createSchedule({
      name: 'hello-check',
      cron: '*/2 * * * * *',
      session: check('Hello'),
    });
    const passed = await waitFor(
      async () => {
        const { recent } = await api.client.getSchedule(s.id);
        return recent.filter((r) => r.status === 'succeeded').length >= 2 && recent;
      },
      { what: 'two passing checks', timeoutMs: 30_000 },
    );
    const done = await api.client.getSession(passed.find((r) => r.status === 'succeeded')!.id);
    expect(done).toMatchObject({ scheduleId: s.id, status: 'succeeded' });
    expect((done.result as { extracted: unknown }).extracted).toEqual({ text: 'A simple page.' });

    // The page changes (here: the check does); the next runs fail and say why.
    await api.client.updateSchedule(s.id, { session: check('Goodbye') });
    const failed = await waitFor(
      async () => (await api.client.getSchedule(s.id)).recent.find((r) => r.status === 'failed'),
      { what: 'a failing check', timeoutMs: 30_000 },
    );
    expect(failed.errorMessage).toMatch(/step 2 \(assert\)/);
    await api.client.updateSchedule(s.id, { enabled: false });
    const all = (await api.client.getSchedule(s.id)).recent;
    const times = all.map((r) => Date.parse(r.scheduledFor));
    expect(new Set(times).size).toBe(times.length);
    expect([...times].sort((x, y) => y - x)).toEqual(times);
  });
});
