import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { uuidv7 } from '../../src/core/ids.js';
import type { ArtifactMode } from '../../src/core/types.js';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import { defineSession, type SessionDefinition } from '../../src/sessions/define.js';
import { executeSession, type ExecuteOptions } from '../../src/sessions/execute.js';
import { flowSessionType, type SessionType } from '../../src/sessions/registry.js';
import { inputValidator } from '../../src/sessions/input.js';
import { useFixturePool } from '../helpers/chromium.js';
import { startFixtureServer } from '../fixtures/server.js';
import { waitFor } from '../helpers/wait.js';

const fixture = useFixturePool();

const url = (path: string) => `${fixture.site.url}/pages/${path}`;

function claimed(
  type: string,
  input: unknown,
  over: { timeoutMs?: number; screenshot?: ArtifactMode; trace?: ArtifactMode } = {},
): ClaimedSession {
  const now = new Date().toISOString();
  return {
    id: uuidv7(),
    type,
    input,
    priority: 0,
    attempt: 1,
    maxAttempts: 1,
    timeoutMs: over.timeoutMs ?? 20_000,
    leaseToken: uuidv7(),
    leaseExpiresAt: now,
    createdAt: now,
    artifactOptions: { screenshot: over.screenshot ?? 'on-failure', trace: over.trace ?? 'off' },
  };
}

/** A session type from a definition, as the registry normalizes it. */
function typeOf(def: SessionDefinition): SessionType {
  const browser = def.browser !== false;
  return {
    name: def.name,
    kind: 'code',
    browser,
    reuseContext: browser && def.reuseContext === true,
    source: 'test',
    validateInput: inputValidator(def.input),
    run: async (ctx) => (def as { run(c: typeof ctx): unknown }).run(ctx),
  };
}

async function run(
  type: SessionType,
  session: ClaimedSession,
  over: Partial<ExecuteOptions> = {},
  controller = new AbortController(),
): Promise<{
  outcome: Awaited<ReturnType<typeof executeSession>>;
  artifacts: Map<string, { data: Buffer; contentType: string }>;
}> {
  const artifacts = new Map<string, { data: Buffer; contentType: string }>();
  const outcome = await executeSession({
    session,
    type,
    pool: fixture.pool,
    signal: controller.signal,
    abort: (reason) => controller.abort(reason),
    upload: async (name, data, contentType) => {
      artifacts.set(name, { data, contentType });
    },
    ...over,
  });
  return { outcome, artifacts };
}

const PNG_MAGIC = '89504e470d0a1a0a';

/** Names of the entries of a zip archive, from its central directory. */
function zipEntries(zip: Buffer): Map<string, Buffer> {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip: no end of central directory');
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const out = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('bad central directory entry');
    const method = zip.readUInt16LE(at + 10);
    const size = zip.readUInt32LE(at + 20);
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.subarray(at + 46, at + 46 + nameLen).toString('utf8');
    const dataAt = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const raw = zip.subarray(dataAt, dataAt + size);
    out.set(name, method === 8 ? inflateRawSync(raw) : raw);
    at += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

describe('code sessions', () => {
  const greet = defineSession({
    name: 'greet',
    input: z.object({ user: z.object({ name: z.string().min(1) }), times: z.number().int().default(1) }),
    async run({ page, input, attempt, sessionId, log, artifacts }) {
      const { user, times } = input;
      await page.goto(url('form.html'));
      await page.fill('#name', user.name);
      await page.click('#submit');
      log('submitted', { user: user.name });
      await artifacts.add('note.txt', Buffer.from('hello'), 'text/plain');
      return { text: await page.textContent('#result'), times, attempt, sessionId };
    },
  });

  it('validates input with a zod schema, then runs with page, input, attempt, log and artifacts', async () => {
    const session = claimed('greet', { user: { name: 'Ada' } });
    const { outcome, artifacts } = await run(typeOf(greet), session);
    expect(outcome).toEqual({
      status: 'succeeded',
      result: {
        text: 'Hello Ada, color , agree false, news true',
        times: 1,
        attempt: 1,
        sessionId: session.id,
      },
    });
    expect(artifacts.get('note.txt')?.data.toString()).toBe('hello');
    expect(artifacts.get('console.log')?.data.toString()).toMatch(/log: submitted \{"user":"Ada"\}/);
    expect(artifacts.has('failure.png')).toBe(false);
  });

  it('fails bad input with the field path (zod and JSON schema) before running', async () => {
    const bad = await run(typeOf(greet), claimed('greet', { user: { name: 3 } }));
    expect(bad.outcome.status).toBe('failed');
    expect(bad.outcome.errorMessage).toMatch(/^invalid input: input\.user\.name: /);

    let ran = false;
    const json = defineSession({
      name: 'json-typed',
      browser: false,
      input: {
        type: 'object',
        properties: { url: { type: 'string' }, retries: { type: 'integer', minimum: 0 } },
        required: ['url'],
        additionalProperties: false,
      },
      run: ({ input }) => {
        ran = true;
        return input;
      },
    });
    const missing = await run(typeOf(json), claimed('json-typed', { retries: 1 }));
    expect(missing.outcome).toEqual({
      status: 'failed',
      errorMessage: 'invalid input: input.url: is required',
    });
    const negative = await run(typeOf(json), claimed('json-typed', { url: 'x', retries: -1 }));
    expect(negative.outcome).toEqual({
      status: 'failed',
      errorMessage: 'invalid input: input.retries: must be >= 0',
    });
    expect(ran).toBe(false);
    const good = await run(typeOf(json), claimed('json-typed', { url: 'x', retries: 2 }), {
      pool: undefined,
    });
    expect(good.outcome).toEqual({ status: 'succeeded', result: { url: 'x', retries: 2 } });
  });

  it('a throw fails the session with its message and a PNG failure screenshot', async () => {
    const thrower = defineSession({
      name: 'thrower',
      async run({ page }) {
        await page.goto(url('simple.html'));
        throw new Error('price missing on the product page');
      },
    });
    const { outcome, artifacts } = await run(typeOf(thrower), claimed('thrower', {}));
    expect(outcome).toEqual({ status: 'failed', errorMessage: 'price missing on the product page' });
    const shot = artifacts.get('failure.png');
    expect(shot?.contentType).toBe('image/png');
    expect(shot?.data.subarray(0, 8).toString('hex')).toBe(PNG_MAGIC);
  });

  it('what leaves a code session has no secret of its input, no colour codes and only storable text', async () => {
    const SECRET = 'tok en/ü-42';
    const leaky = defineSession({
      name: 'leaky',
      async run({ page, input, log }) {
        const { secretToken } = input as { secretToken: string };
        log(`signing in with ${secretToken}`, { token: secretToken });
        await page.goto(`${url('simple.html')}?t=${encodeURIComponent(secretToken)}`);
        await page.evaluate((t) => console.log('page saw', t), secretToken);
        await page.click(`text="${secretToken}"`, { timeout: 300 });
      },
    });
    const lines: string[] = [];
    const { outcome, artifacts } = await run(typeOf(leaky), claimed('leaky', { secretToken: SECRET }), {
      log: (msg, data) => lines.push(`${msg} ${JSON.stringify(data)}`),
    });
    expect(outcome.status).toBe('failed');
    expect(outcome.errorMessage).toMatch(/^page\.click: Timeout 300ms exceeded\./);
    expect(outcome.errorMessage).toContain('[redacted]');
    expect(outcome.errorMessage).not.toContain('\u001b');
    const consoleLog = artifacts.get('console.log')?.data.toString() ?? '';
    expect(consoleLog).toContain('log: signing in with [redacted] {"token":"[redacted]"}');
    expect(consoleLog).toContain('console.log: page saw [redacted]');
    expect(lines.join('\n')).toContain('signing in with [redacted]');
    for (const text of [outcome.errorMessage ?? '', consoleLog, lines.join('\n')]) {
      expect(text).not.toContain('tok en');
      expect(text).not.toContain(encodeURIComponent(SECRET));
    }

    const unstorable = defineSession({
      name: 'unstorable',
      browser: false,
      run: () => ({ title: 'a\u0000b', list: ['half \uD83D', 'ok 😀'] }),
    });
    const kept = await run(typeOf(unstorable), claimed('unstorable', {}), { pool: undefined });
    expect(kept.outcome).toEqual({
      status: 'succeeded',
      result: { title: 'a\uFFFDb', list: ['half \uFFFD', 'ok 😀'] },
    });
    expect(kept.artifacts.get('console.log')?.data.toString()).toContain(
      'sfw: 2 characters of the result replaced with U+FFFD',
    );
  });

  it('a session that hangs past its timeout fails with "timed out after N ms" and its context is released', async () => {
    let signalSeen = false;
    const hang = defineSession({
      name: 'hang',
      async run({ page, signal }) {
        signal.addEventListener('abort', () => (signalSeen = true));
        await page.goto(url('slow.html?delay=100000'));
        await page.waitForSelector('#late', { timeout: 60_000 });
      },
    });
    const started = Date.now();
    const { outcome, artifacts } = await run(typeOf(hang), claimed('hang', {}, { timeoutMs: 700 }));
    expect(outcome).toEqual({ status: 'failed', errorMessage: 'timed out after 700 ms' });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(signalSeen).toBe(true);
    expect(artifacts.get('failure.png')?.data.subarray(0, 8).toString('hex')).toBe(PNG_MAGIC);
  });

  it('the runner’s abort gives cancelled, at once', async () => {
    const ac = new AbortController();
    const slow = defineSession({
      name: 'slow',
      browser: false,
      run: ({ signal }) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('stopped')))),
    });
    setTimeout(() => ac.abort(new Error('cancelled by request')), 100);
    const { outcome } = await run(typeOf(slow), claimed('slow', {}), {}, ac);
    expect(outcome).toEqual({ status: 'cancelled', errorMessage: 'cancelled by request' });
  });

  it('a browser:false session gets no page and needs no pool', async () => {
    const api = defineSession({
      name: 'api-check',
      browser: false,
      run: (ctx) => ({ hasPage: ctx.page !== undefined, hasContext: ctx.context !== undefined }),
    });
    const { outcome } = await run(typeOf(api), claimed('api-check', {}), { pool: undefined });
    expect(outcome).toEqual({ status: 'succeeded', result: { hasPage: false, hasContext: false } });
  });

  it('a browser killed mid-session gives error, and the next session runs on a new browser', async () => {
    const started = { value: false };
    const waiting = defineSession({
      name: 'waiting',
      async run({ page }) {
        await page.goto(url('slow.html?delay=100000'));
        started.value = true;
        await page.waitForSelector('#late', { timeout: 60_000 });
      },
    });
    const generation = fixture.pool.generation;
    const pending = run(typeOf(waiting), claimed('waiting', {}));
    await waitFor(() => started.value, { what: 'the session to start' });
    process.kill(fixture.pool.browserPid!, 'SIGKILL');
    const { outcome, artifacts } = await pending;
    expect(outcome.status).toBe('error');
    expect(outcome.errorMessage).toMatch(/^browser crashed or disconnected: /);
    expect(artifacts.has('failure.png')).toBe(false);

    const after = await run(typeOf(greet), claimed('greet', { user: { name: 'Bo' } }));
    expect(after.outcome.status).toBe('succeeded');
    expect(fixture.pool.generation).toBeGreaterThan(generation);
  });

  it('an artifact upload failure never changes the outcome', async () => {
    const { outcome } = await run(
      typeOf(greet),
      claimed('greet', { user: { name: 'Cy' } }, { trace: 'always' }),
      {
        upload: () => Promise.reject(new Error('API down')),
      },
    );
    expect(outcome.status).toBe('succeeded');
  });
});

describe('flow sessions', () => {
  it('returns {extracted, steps}, uploads screenshot steps, console lines and page errors', async () => {
    const { outcome, artifacts } = await run(
      flowSessionType(),
      claimed('flow', {
        steps: [
          { action: 'goto', url: url('console.html') },
          { action: 'screenshot', name: 'after-load' },
          { action: 'goto', url: url('list.html') },
          { action: 'extract', selector: 'li', as: 'items', all: true },
        ],
      }),
    );
    expect(outcome.status).toBe('succeeded');
    const result = outcome.result as {
      extracted: { items: string[] };
      steps: { action: string; ok: boolean }[];
    };
    expect(result.extracted.items).toHaveLength(60);
    expect(result.steps.map((s) => s.ok)).toEqual([true, true, true, true]);
    expect(artifacts.get('after-load.png')?.data.subarray(0, 8).toString('hex')).toBe(PNG_MAGIC);
    const log = artifacts.get('console.log')?.data.toString() ?? '';
    expect(log).toContain('console.log: hello from the page');
    expect(log).toContain('console.warning: a warning');
    expect(log).toContain('pageerror: boom from the page');
  });

  it('a failing step fails the session with index, action and message; trace on failure is a Playwright trace zip', async () => {
    const { outcome, artifacts } = await run(
      flowSessionType(),
      claimed(
        'flow',
        {
          steps: [
            { action: 'goto', url: url('form.html') },
            { action: 'fill', selector: '#name', value: 'Ada' },
            { action: 'assert', selector: '#title', text: 'Checkout', timeoutMs: 300 },
          ],
        },
        { trace: 'on-failure' },
      ),
    );
    expect(outcome.status).toBe('failed');
    expect(outcome.errorMessage).toBe(
      'step 3 (assert): expected "#title" to contain text "Checkout", got "Sign up" (after 300 ms)',
    );
    expect((outcome.result as { steps: unknown[] }).steps).toHaveLength(3);
    expect(artifacts.get('failure.png')?.data.subarray(0, 8).toString('hex')).toBe(PNG_MAGIC);
    const trace = artifacts.get('trace.zip');
    expect(trace?.contentType).toBe('application/zip');
    const entries = zipEntries(trace!.data);
    const names = [...entries.keys()];
    expect(names.some((n) => n.endsWith('.trace'))).toBe(true);
    expect(names.some((n) => n.endsWith('.network'))).toBe(true);
    const events = entries
      .get(names.find((n) => n.endsWith('.trace'))!)!
      .toString()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; version?: number });
    expect(events[0]?.type).toBe('context-options');
    expect(events.some((e) => e.type === 'before' || e.type === 'action')).toBe(true);
  });

  it('a bad flow input fails before any browser work; trace off on success uploads nothing', async () => {
    const bad = await run(flowSessionType(), claimed('flow', { steps: [{ action: 'fly' }] }));
    expect(bad.outcome.status).toBe('failed');
    expect(bad.outcome.errorMessage).toMatch(/^invalid input: input\.steps\.0\.action: unknown action "fly"/);
    const ok = await run(
      flowSessionType(),
      claimed('flow', { steps: [{ action: 'goto', url: url('simple.html') }] }, { trace: 'on-failure' }),
    );
    expect(ok.outcome.status).toBe('succeeded');
    expect([...ok.artifacts.keys()]).toEqual([]);
  });

  it('stores no console.log for a session without console output (the browser’s own favicon 404 is none)', async () => {
    // A site the browser has not seen: it asks each origin for /favicon.ico once, after the load.
    const site = await startFixtureServer();
    try {
      const quiet = defineSession({
        name: 'quiet',
        async run({ page, context }) {
          const favicon = context.waitForEvent('console', {
            predicate: (m) => m.location().url === `${site.url}/favicon.ico`,
            timeout: 15_000,
          });
          await page.goto(`${site.url}/pages/simple.html`);
          await favicon; // the site answered 404
          return { title: await page.title() };
        },
      });
      const { outcome, artifacts } = await run(typeOf(quiet), claimed('quiet', {}));
      expect(outcome).toEqual({ status: 'succeeded', result: { title: 'Simple fixture' } });
      expect([...artifacts.keys()]).toEqual([]);
    } finally {
      await site.close();
    }
  });
});
