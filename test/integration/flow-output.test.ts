import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrowserPool } from '../../src/browser/pool.js';
import { createLogger } from '../../src/core/log.js';
import type { SessionView } from '../../src/protocol/schemas.js';
import type { FlowResult, FlowStep } from '../../src/protocol/flow.js';
import { ApiError } from '@session-framework/sdk';
import { executeSession } from '../../src/sessions/execute.js';
import { flowSessionType } from '../../src/sessions/registry.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { freePort } from '../helpers/ports.js';
import { startRunner, type InProcessRunner } from '../helpers/runner.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { requireChromium } from '../helpers/chromium.js';

/**
 * What a flow session leaves behind, end to end (API, Postgres, a runner with Chromium, fixture pages):
 * page text Postgres cannot store, secrets of the input, reserved names and selector placeholders at
 * enqueue, and Playwright's colour codes.
 */

const R = '\uFFFD';
let api: TestApi;
let pool: BrowserPool;
let site: FixtureServer;
let runner: InProcessRunner;
const logLines: string[] = [];

beforeAll(async () => {
  const executablePath = await requireChromium();
  api = await startTestApi('flow_output');
  site = await startFixtureServer();
  pool = new BrowserPool({ executablePath });
  await pool.start();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  const type = flowSessionType();
  runner = await startRunner(api, {
    runnerId: 'flow-output-runner',
    types: [{ name: 'flow', browser: true }],
    log: createLogger('debug', { component: 'runner' }, sink),
    executor: (session, ctx) =>
      executeSession({
        session,
        type,
        pool,
        signal: ctx.signal,
        abort: (reason) => ctx.abort(reason),
        upload: (name, data, contentType) => ctx.upload(name, data, contentType),
        log: ctx.log,
      }),
  });
});

afterAll(async () => {
  await runner?.stop();
  await pool?.close();
  await site?.close();
  await api?.stop();
});

async function runFlow(
  steps: FlowStep[],
  values: Record<string, unknown> = {},
  over: { maxAttempts?: number; retryOn?: ('failed' | 'error')[] } = {},
): Promise<SessionView> {
  const s = await api.client.createSession({ type: 'flow', input: { steps, ...values }, ...over });
  return api.client.waitUntilDone(s.id, { timeoutMs: 30_000 });
}

async function refusal(body: Parameters<TestApi['client']['createSession']>[0]): Promise<ApiError> {
  const err = await api.client.createSession(body).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
}

describe('page text Postgres cannot store', () => {
  it('a flow extracting NUL and half emojis succeeds, keeps all its data, and says what was replaced', async () => {
    const done = await runFlow([
      { action: 'goto', url: `${site.url}/pages/unstorable.html` },
      { action: 'extract', selector: '#title', as: 'title' },
      { action: 'extract', selector: '#nul', as: 'nul' },
      { action: 'extract', selector: '#cut', as: 'cut' },
      { action: 'extract', selector: '#tags li', as: 'tags', all: true },
      { action: 'extract', selector: '#price', as: 'price' },
    ]);
    expect(done.errorMessage).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.attempt).toBe(1);
    const result = done.result as FlowResult;
    expect(result.extracted).toEqual({
      title: 'Product',
      nul: `before${R}after`,
      cut: `Great shoes ${R}`,
      tags: ['ok 😀', `low ${R} alone`, 'plain'],
      price: '89.00 €',
    });
    expect(result.warnings).toHaveLength(3);
    expect(result.warnings?.[0]).toBe(
      'extracted.nul: 1 character replaced with U+FFFD (NUL or half of a UTF-16 pair, which cannot be stored)',
    );
    expect(result.steps[2]?.warning).toMatch(/^1 character replaced with U\+FFFD/);
  });

  it('the API stores a completion with such text from any runner, replaced, on each completion route', async () => {
    const R3 = { extracted: { a: 'x\u0000', b: '\uD83D end' }, steps: [] };
    const created = await api.client.createSessions([
      { type: 'raw-runner' },
      { type: 'raw-runner' },
      { type: 'raw-runner' },
    ]);
    const { sessions } = await api.runnerClient.claim('raw-runner-1', { slots: 3, types: ['raw-runner'] });
    expect(sessions).toHaveLength(3);
    const [one, two, three] = sessions;
    await api.runnerClient.complete(one!.id, {
      leaseToken: one!.leaseToken,
      status: 'failed',
      result: R3,
      errorMessage: 'bad \u0000 byte \u001b[2mdim\u001b[22m',
    });
    await api.runnerClient.completeMany('raw-runner-1', [
      { id: two!.id, leaseToken: two!.leaseToken, status: 'succeeded', result: R3 },
    ]);
    const claimed = await api.runnerClient.claim('raw-runner-1', {
      slots: 0,
      types: ['raw-runner'],
      complete: [{ id: three!.id, leaseToken: three!.leaseToken, status: 'succeeded', result: R3 }],
    });
    expect(claimed.completed?.[0]?.outcome).toBe('accepted');
    for (const s of created.items) {
      const stored = await api.client.getSession(s.id);
      expect(stored.result).toEqual({ extracted: { a: `x${R}`, b: `${R} end` }, steps: [] });
    }
    const failed = await api.client.getSession(one!.id);
    expect(failed.status).toBe('failed');
    expect(failed.errorMessage).toBe(`bad ${R} byte dim`);
    expect(failed.attempts[0]?.errorMessage).toBe(`bad ${R} byte dim`);
  });

  it('an input Postgres cannot store is refused at enqueue with the path of the field', async () => {
    const steps = [{ action: 'fill', selector: '#q', value: '{{input.q}}' }];
    const nul = await refusal({ type: 'flow', input: { steps, input: { q: 'a\u0000b' } } });
    expect(nul.status).toBe(400);
    expect(nul.path).toBe('body.input.input.q');
    expect(nul.message).toContain('NUL');
    const cut = await refusal({ type: 'other', input: { list: ['ok', 'half \uD83D'] } });
    expect(cut.path).toBe('body.input.list.1');
    expect(cut.message).toMatch(/unpaired UTF-16 surrogate/);
    const batch = await api.client
      .createSessions([{ type: 'other' }, { type: 'other', input: { v: '\uDE00' } }])
      .catch((e: unknown) => e as ApiError);
    expect((batch as ApiError).path).toBe('body.sessions.1.input.v');
  });
});

describe('secrets of the input', () => {
  const SECRET = 'hunter2 sécret/+x';

  it('never reach the stored error, the attempts, the step results, the runner log or the dashboard', async () => {
    const closed = await freePort();
    logLines.length = 0;
    const asserted = await runFlow(
      [
        { action: 'goto', url: `${site.url}/pages/simple.html` },
        { action: 'assert', selector: '#text', text: '{{input.secret}}', timeoutMs: 300 },
      ],
      { input: { secret: SECRET } },
      { maxAttempts: 2, retryOn: ['failed'] },
    );
    const navigated = await runFlow(
      [{ action: 'goto', url: `http://127.0.0.1:${closed}/login?token={{input.secretToken}}&user=ada` }],
      { secretToken: SECRET },
    );
    expect(asserted.status).toBe('failed');
    expect(asserted.attempts).toHaveLength(2);
    expect(asserted.errorMessage).toBe(
      'step 2 (assert): expected "#text" to contain text "[redacted]", got "A simple page." (after 300 ms)',
    );
    expect(navigated.status).toBe('failed');
    expect(navigated.errorMessage).toMatch(/^step 1 \(goto\): page\.goto: net::ERR_CONNECTION_REFUSED/);
    expect(navigated.errorMessage).toContain('token=[redacted]&user=ada');

    const page = await pool.acquire();
    let dashboard: string[] = [];
    try {
      await page.page.goto(`${api.url}/#/sessions/${navigated.id}`);
      await page.page.locator('#session-error').waitFor();
      dashboard = [
        (await page.page.locator('#session-input').textContent()) ?? '',
        (await page.page.locator('#session-error').textContent()) ?? '',
      ];
    } finally {
      await page.release();
    }
    expect(dashboard[0]).toContain('"secretToken": "••••"');
    expect(dashboard[0]).toContain('{{input.secretToken}}');

    const stored = JSON.stringify([asserted, navigated].map((s) => [s.errorMessage, s.attempts, s.result]));
    const logs = logLines.join('');
    expect(logs).toContain('session finished');
    expect(logs).toContain('[redacted]');
    for (const form of [SECRET, encodeURIComponent(SECRET), encodeURI(SECRET), 'hunter2']) {
      expect(stored, form).not.toContain(form);
      expect(logs, form).not.toContain(form);
      expect(dashboard.join('\n'), form).not.toContain(form);
    }
  });
});

describe('names and selectors at enqueue', () => {
  it('refuses a reserved extract name with its path', async () => {
    const err = await refusal({
      type: 'flow',
      input: {
        steps: [
          { action: 'goto', url: `${site.url}/pages/simple.html` },
          { action: 'extract', selector: 'h1', as: 'title' },
          { action: 'extract', selector: 'p', as: 'text' },
          { action: 'extract', selector: 'h1', as: '__proto__' },
        ],
      },
    });
    expect(err.status).toBe(400);
    expect(err.path).toBe('body.input.steps.3.as');
    expect(err.message).toContain('"__proto__" is reserved');
  });

  it('refuses a selector placeholder whose value would add a step or change the engine', async () => {
    const err = await refusal({
      type: 'flow',
      input: {
        steps: [
          { action: 'goto', url: `${site.url}/pages/frames.html` },
          { action: 'extract', selector: '#{{input.name}}', as: 'inner' },
        ],
        input: { name: 'frame >> internal:control=enter-frame >> #inner' },
      },
    });
    expect(err.status).toBe(400);
    expect(err.path).toBe('body.input.steps.1.selector');
    expect(err.message).toContain('{{input.name}}');
  });

  it('a quoted placeholder matches its value as text, and the injected engine does not take effect', async () => {
    const done = await runFlow(
      [
        { action: 'goto', url: `${site.url}/pages/frames.html` },
        { action: 'assert', selector: '[data-name="{{input.name}}"]', count: 0 },
        { action: 'extract', selector: 'text="{{input.said}}"', as: 'said' },
      ],
      {
        input: {
          name: `x"], iframe >> internal:control=enter-frame >> [data-name="y`,
          said: 'He said "hi" \\ ok',
        },
      },
    );
    expect(done.errorMessage).toBeNull();
    expect(done.status).toBe('succeeded');
    expect((done.result as FlowResult).extracted).toEqual({ said: 'He said "hi" \\ ok' });
  });
});

describe("Playwright's colour codes", () => {
  it('never reach the stored error message or the step results', async () => {
    const done = await runFlow([
      { action: 'goto', url: `${site.url}/pages/slow.html?delay=100000` },
      { action: 'click', selector: '#late', timeoutMs: 400 },
    ]);
    expect(done.status).toBe('failed');
    expect(done.errorMessage).toMatch(/^step 2 \(click\): locator\.click: Timeout 400ms exceeded\./);
    expect(done.errorMessage).toContain("waiting for locator('#late')");
    const stored = JSON.stringify([done.errorMessage, done.attempts, done.result]);
    expect(stored).not.toContain('\\u001b');
    expect(stored).not.toMatch(/\[2m|\[22m/);
  });
});
