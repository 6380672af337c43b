import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { startRunner } from '../helpers/runner.js';

let api: TestApi;

beforeAll(async () => {
  api = await startTestApi('runner-types');
});
afterAll(async () => {
  await api.stop();
});

it('GET /v1/runners names the session types each runner serves, as its heartbeats tell them', async () => {
  const r = await startRunner(api, {
    runnerId: 'typed-runner',
    types: [
      { name: 'sleep', browser: false },
      { name: 'report', browser: false },
    ],
  });
  try {
    // The first heartbeat, at start, registers the runner with its types.
    const view = (await api.client.runners()).find((x) => x.runnerId === 'typed-runner');
    expect(view?.types).toEqual(['sleep', 'report']);
    const { rows } = await api.db.query<{ types: string[] }>(
      `SELECT types FROM runner_health WHERE runner_id = 'typed-runner'`,
    );
    expect(rows[0]?.types).toEqual(['sleep', 'report']);
  } finally {
    await r.stop();
  }

  // A heartbeat that does not name them (an older runner) keeps what was told; one never told has none.
  await api.runnerClient.heartbeat('typed-runner', { activeSessions: 0, maxConcurrency: 1, sessions: [] });
  await api.runnerClient.heartbeat('untyped-runner', { activeSessions: 0, maxConcurrency: 1, sessions: [] });
  const runners = await api.client.runners();
  expect(runners.find((x) => x.runnerId === 'typed-runner')?.types).toEqual(['sleep', 'report']);
  expect(runners.find((x) => x.runnerId === 'untyped-runner')?.types).toEqual([]);
});
