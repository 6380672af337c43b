import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionView } from '@session-framework/sdk';
import { flowSessionType } from '../../src/sessions/registry.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { startBrowserTypeRunner, type BrowserTypeRunner } from '../helpers/browser-runner.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';

/**
 * The flows of examples/ as a user runs them: enqueued through the real API with the site given by a
 * placeholder (as `sfw run <file> --input '{"baseUrl": …}'` does), claimed by a runner, run in Chromium
 * against the fixture pages. The API's /openapi.json describes them as FlowInput.
 */

let api: TestApi;
let site: FixtureServer;
let runner: BrowserTypeRunner;

const example = (file: string) =>
  JSON.parse(readFileSync(new URL(`../../examples/${file}`, import.meta.url), 'utf8')) as Record<
    string,
    unknown
  >;

beforeAll(async () => {
  api = await startTestApi('examples');
  site = await startFixtureServer();
  runner = await startBrowserTypeRunner(api, 'examples-runner', flowSessionType());
});

afterAll(async () => {
  await runner?.stop();
  await site?.close();
  await api?.stop();
});

/** Enqueues a flow file with values added as top-level keys (what sfw run --input does) and waits. */
async function run(file: string, values: Record<string, unknown>): Promise<SessionView> {
  const s = await api.client.createSession({ type: 'flow', input: { ...example(file), ...values } });
  return api.client.waitUntilDone(s.id, { timeoutMs: 60_000 });
}

describe('examples/login-check.json', () => {
  const values = () => ({
    baseUrl: `${site.url}/pages`,
    email: 'ada@example.com',
    secretPassword: 'correct horse',
  });

  it('signs in, lands on the account page and reads the plan', async () => {
    const done = await run('login-check.json', values());
    expect(done.errorMessage).toBeNull();
    expect(done.status).toBe('succeeded');
    const result = done.result as {
      extracted: Record<string, unknown>;
      steps: { action: string; ok: boolean }[];
    };
    expect(result.extracted).toEqual({ plan: 'Pro' });
    expect(result.steps.map((s) => [s.action, s.ok])).toEqual(
      (example('login-check.json').steps as { action: string }[]).map((s) => [s.action, true]),
    );
    expect(done.artifacts.map((a) => a.name)).toContain('account.png');
  });

  it('fails on a wrong password, at the wait for the account page, without showing the password', async () => {
    const done = await run('login-check.json', { ...values(), secretPassword: 'hunter2-wrong' });
    expect(done.status).toBe('failed');
    expect(done.errorMessage).toMatch(
      /^step 5 \(waitFor\): expected the URL to match "\*\*\/account\.html\*"/,
    );
    expect(JSON.stringify(done.result)).not.toContain('hunter2-wrong');
    expect(done.errorMessage).not.toContain('hunter2-wrong');
  });
});

describe('examples/paginated-scrape.json', () => {
  it('collects every item of every page, stopping when next is disabled', async () => {
    // Each page's items come 150 ms after the click, the list empty until then.
    const done = await run('paginated-scrape.json', { listUrl: `${site.url}/pages/paged.html?delay=150` });
    expect(done.errorMessage).toBeNull();
    expect(done.status).toBe('succeeded');
    const result = done.result as {
      extracted: { items: string[] };
      steps: { action: string; passes?: unknown[][] }[];
    };
    expect(result.extracted.items).toEqual([
      'Apple',
      'Banana',
      'Cherry',
      'Date',
      'Elderberry',
      'Fig',
      'Grape',
      'Honeydew',
      'Kiwi',
    ]);
    expect(result.steps.at(-1)?.action).toBe('repeat');
    expect(result.steps.at(-1)?.passes).toHaveLength(2);
  });
});

describe('the served /openapi.json', () => {
  it('describes both examples, and a flow input it would refuse, through FlowInput', async () => {
    const res = await fetch(`${api.url}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { components: Record<string, unknown>; paths: Record<string, unknown> };
    const ajv = new Ajv2020({ strict: false, validateFormats: false });
    ajv.addSchema({ $id: 'sfw', components: doc.components, paths: doc.paths });
    const body = ajv.compile({
      $ref: 'sfw#/paths/~1v1~1sessions/post/requestBody/content/application~1json/schema',
    });
    for (const file of ['login-check.json', 'paginated-scrape.json'])
      expect(body({ type: 'flow', input: example(file) }), JSON.stringify(body.errors)).toBe(true);
    const bad = { steps: [{ action: 'repeat', max: 2, steps: [{ action: 'click' }] }] };
    expect(body({ type: 'flow', input: bad })).toBe(false);
    const refused = await api.client.createSession({ type: 'flow', input: bad }).catch((e: unknown) => e);
    expect((refused as { path?: string }).path).toBe('body.input.steps.0.steps.0.selector');
  });
});
