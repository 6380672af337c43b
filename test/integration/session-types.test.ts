import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { RUNNER_CONFIG_KEYS, startRunner, type StartedRunner } from '../../src/runner/main.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { startRunner as startInProcessRunner } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Runners register their session types with input schemas; every API replica checks input at enqueue
 * against them (400 with the field's path, nothing stored), and says when a type is registered by no one.
 */

const SESSIONS_DIR = 'test/fixtures/typed-sessions';

let api: TestApi;
/** A second replica on the same database. */
let replica: TestApi;
let runner: StartedRunner;
const logLines: string[] = [];

function config(env: Record<string, string>) {
  return loadConfig(RUNNER_CONFIG_KEYS, {
    env: { API_BASE_URL: api.url, HEARTBEAT_INTERVAL_MS: '300', POLL_INTERVAL_MS: '500', ...env },
  });
}

async function count(type: string): Promise<number> {
  const { rows } = await api.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM sessions WHERE type = $1',
    [type],
  );
  return rows[0]?.n ?? 0;
}

async function typeView(on: TestApi, name: string) {
  const view = (await on.client.types()).find((t) => t.name === name);
  if (!view) throw new Error(`type ${name} not in GET /v1/types`);
  return view;
}

beforeAll(async () => {
  api = await startTestApi('session-types');
  replica = await startTestApi('session-types-replica', { db: { db: api.db, url: api.databaseUrl } });
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    }),
  );
  runner = await startRunner(config({ RUNNER_ID: 'typed-1', SESSIONS_DIR }), {
    log,
    fixedPollInterval: true,
    findChromium: () => undefined,
  });
});
afterAll(async () => {
  await runner.stop();
  await replica.stop();
  await api.stop();
});

describe('a runner registers its types with their input schemas', () => {
  it('at start: zod schemas as JSON Schema, JSON schemas as they are, the rest without one and a note', async () => {
    expect(runner.types.sort()).toEqual(['custom-check', 'fetch-page', 'json-typed', 'report-defaults']);
    const fetch = await typeView(api, 'fetch-page');
    expect(fetch.schemaHash).toMatch(/^[0-9a-f]{64}$/);
    expect(fetch).toMatchObject({
      builtIn: false,
      runners: [{ id: 'typed-1', status: 'running', live: true }],
    });
    expect(fetch.schema).toMatchObject({
      type: 'object',
      properties: { url: { type: 'string', format: 'uri' }, retries: { type: 'integer', default: 1 } },
      required: ['url'],
    });
    expect(fetch.conflict).toBeUndefined();
    expect(await typeView(api, 'json-typed')).toMatchObject({
      schema: { type: 'object', properties: { count: { type: 'integer', minimum: 1 } }, required: ['count'] },
      runners: [{ id: 'typed-1' }],
    });
    const custom = await typeView(api, 'custom-check');
    expect(custom.schema).toBeNull();
    expect(custom.schemaHash).toBeNull();
    expect(custom.note).toMatch(/cannot be converted to JSON Schema.*checked on the runner only/);
    expect(custom.runners.map((r) => r.id)).toEqual(['typed-1']);
    expect(logLines.join('\n')).toMatch(/session type custom-check registered without an input schema/);
    // flow is built in (this runner has no Chromium, so it does not serve it).
    expect(await typeView(api, 'flow')).toMatchObject({ builtIn: true, schema: null, runners: [] });
    const { rows } = await api.db.query<{ type: string }>(
      `SELECT type FROM session_types WHERE runner_id = 'typed-1' ORDER BY type`,
    );
    expect(rows.map((r) => r.type)).toEqual(['custom-check', 'fetch-page', 'json-typed', 'report-defaults']);
  });
});

describe('enqueue checks input against the registered schema', () => {
  it('bad input is 400 with the path under body.input and stores nothing, on every replica', async () => {
    const before = await count('fetch-page');
    for (const on of [api, replica]) {
      await expect(
        on.client.createSession({ type: 'fetch-page', input: { url: 'not a url' } }),
      ).rejects.toMatchObject({ status: 400, code: 'VALIDATION', path: 'body.input.url' });
      await expect(on.client.createSession({ type: 'fetch-page', input: {} })).rejects.toMatchObject({
        status: 400,
        path: 'body.input.url',
        message: 'body.input.url: is required',
      });
      await expect(
        on.client.createSession({ type: 'fetch-page', input: { url: 'https://a.test/', retries: 9 } }),
      ).rejects.toMatchObject({ status: 400, path: 'body.input.retries' });
      await expect(
        on.client.createSessions([
          { type: 'fetch-page', input: { url: 'https://a.test/' } },
          { type: 'fetch-page', input: { url: 42 } },
        ]),
      ).rejects.toMatchObject({ status: 400, path: 'body.sessions.1.input.url' });
      await expect(
        on.client.createSession({ type: 'json-typed', input: { count: 0 } }),
      ).rejects.toMatchObject({ status: 400, path: 'body.input.count' });
    }
    expect(await count('fetch-page')).toBe(before);
    expect(await count('json-typed')).toBe(0);
  });

  it('checks an absent input as the {} it is stored and run as', async () => {
    await api.runnerClient.registerTypes('typed-open', {
      types: [{ name: 'open-object', schema: { type: 'object' } }],
    });
    api.app.sessionTypes.invalidate();
    const created = await api.client.createSession({ type: 'open-object', runAt: '2999-01-01T00:00:00Z' });
    expect(created).toMatchObject({ input: {} });
    expect(created.warnings).toBeUndefined();
    await expect(api.client.createSession({ type: 'json-typed' })).rejects.toMatchObject({
      status: 400,
      path: 'body.input.count',
      message: 'body.input.count: is required',
    });
    await api.client.cancelSession(created.id);
    await api.runnerClient.stopRunner('typed-open');
  });

  it('accepts every url the runner accepts: an international host is not refused by a stricter uri format', async () => {
    // zod's url() parses with WHATWG URL; ajv-formats' "uri" would refuse the non-ASCII host.
    const created = await api.client.createSession({
      type: 'fetch-page',
      input: { url: 'https://bücher.example/straße?q=ü' },
      // Not due: this file's runner serves fetch-page, and the test is about the enqueue.
      runAt: '2999-01-01T00:00:00Z',
    });
    expect(created.warnings ?? []).toEqual([]);
    await api.client.cancelSession(created.id);
  });

  it('good input is 201 without warnings, and runs', async () => {
    for (const on of [api, replica]) {
      const created = await on.client.createSession({
        type: 'fetch-page',
        input: { url: 'https://a.test/' },
      });
      expect(created.status).toBe('queued');
      expect(created.warnings).toBeUndefined();
      const done = await api.client.waitUntilDone(created.id, { timeoutMs: 15_000 });
      expect(done).toMatchObject({ status: 'succeeded', result: { url: 'https://a.test/', retries: 1 } });
    }
    const batch = await api.client.createSessions([{ type: 'json-typed', input: { count: 2 } }]);
    expect(batch.warnings).toBeUndefined();
    // A type registered without a schema is not checked here (the runner checks it).
    const custom = await api.client.createSession({ type: 'custom-check', input: { token: 1 } });
    expect(custom.warnings).toBeUndefined();
  });

  it('a type no runner registered is accepted with a warning', async () => {
    for (const on of [api, replica]) {
      const created = await on.client.createSession({ type: 'nobody-serves', input: { anything: true } });
      expect(created.warnings).toEqual(['no runner has registered type "nobody-serves"']);
      const batch = await on.client.createSessions([
        { type: 'nobody-serves' },
        { type: 'nobody-serves' },
        { type: 'fetch-page', input: { url: 'https://b.test/' } },
      ]);
      expect(batch.items).toHaveLength(3);
      expect(batch.warnings).toEqual(['no runner has registered type "nobody-serves"']);
    }
    // flow keeps its own check and is never "unregistered".
    const flow = await api.client.createSession({
      type: 'flow',
      input: { steps: [{ action: 'waitFor', ms: 1 }] },
    });
    expect(flow.warnings).toBeUndefined();
    await api.client.cancelSession(flow.id);
    await expect(
      api.client.createSession({ type: 'flow', input: { steps: [{ action: 'goto' }] } }),
    ).rejects.toMatchObject({ status: 400, path: 'body.input.steps.0.url' });
  });
});

describe("a type's own timeoutMs and maxAttempts", () => {
  const stored = async (id: string) => {
    const { rows } = await api.db.query<{ timeout_ms: number; max_attempts: number }>(
      'SELECT timeout_ms, max_attempts FROM sessions WHERE id = $1',
      [id],
    );
    return rows[0];
  };

  it('are registered with the type and shown by GET /v1/types; a type without them shows none', async () => {
    for (const on of [api, replica]) {
      expect(await typeView(on, 'report-defaults')).toMatchObject({
        schema: null,
        timeoutMs: 4500,
        maxAttempts: 3,
        runners: [{ id: 'typed-1' }],
      });
      const fetch = await typeView(on, 'fetch-page');
      expect(fetch.timeoutMs).toBeUndefined();
      expect(fetch.maxAttempts).toBeUndefined();
    }
    const { rows } = await api.db.query(
      `SELECT timeout_ms, max_attempts FROM session_types WHERE type = 'report-defaults'`,
    );
    expect(rows).toEqual([{ timeout_ms: 4500, max_attempts: 3 }]);
  });

  it('leave an Idempotency-Key repeat the same request when the type’s defaults changed in between', async () => {
    await api.runnerClient.registerTypes('typed-idem', {
      types: [{ name: 'idem-defaults', schema: null, timeoutMs: 4500 }],
    });
    api.app.sessionTypes.invalidate();
    const body = { type: 'idem-defaults', runAt: '2999-01-01T00:00:00Z' };
    const first = await api.client.createSession(body, { idempotencyKey: 'idem-defaults-1' });
    expect(first).toMatchObject({ timeoutMs: 4500 });
    await api.runnerClient.registerTypes('typed-idem', {
      types: [{ name: 'idem-defaults', schema: null, timeoutMs: 9000 }],
    });
    api.app.sessionTypes.invalidate();
    // The same request again: the session it made, as it was made (not a 409 for the new default).
    const again = await api.client.createSession(body, { idempotencyKey: 'idem-defaults-1' });
    expect(again).toMatchObject({ id: first.id, timeoutMs: 4500 });
    // A request that differs is still refused.
    await expect(
      api.client.createSession({ ...body, timeoutMs: 4500 }, { idempotencyKey: 'idem-defaults-1' }),
    ).rejects.toMatchObject({ status: 409 });
    expect(await api.client.createSession(body)).toMatchObject({ timeoutMs: 9000 });
    await api.runnerClient.stopRunner('typed-idem');
  });

  it("apply at enqueue when the request gives none: the request's own, else the type's, else the API's", async () => {
    for (const on of [api, replica]) {
      const plain = await on.client.createSession({ type: 'report-defaults' });
      expect(plain).toMatchObject({ timeoutMs: 4500, maxAttempts: 3 });
      expect(await stored(plain.id)).toEqual({ timeout_ms: 4500, max_attempts: 3 });
      const own = await on.client.createSession({ type: 'report-defaults', timeoutMs: 1000 });
      expect(own).toMatchObject({ timeoutMs: 1000, maxAttempts: 3 });
      const both = await on.client.createSession({ type: 'report-defaults', timeoutMs: 800, maxAttempts: 1 });
      expect(both).toMatchObject({ timeoutMs: 800, maxAttempts: 1 });
      const batch = await on.client.createSessions([
        { type: 'report-defaults' },
        { type: 'report-defaults', maxAttempts: 5 },
        { type: 'fetch-page', input: { url: 'https://a.test/' } },
        { type: 'nobody-serves' },
        { type: 'flow', input: { steps: [{ action: 'waitFor', ms: 1 }] } },
      ]);
      expect(batch.items.map((s) => [s.timeoutMs, s.maxAttempts])).toEqual([
        [4500, 3],
        [4500, 5],
        [60_000, 1],
        [60_000, 1],
        [60_000, 1],
      ]);
      for (const item of batch.items)
        expect(await stored(item.id)).toMatchObject({ timeout_ms: item.timeoutMs });
      await Promise.all(
        batch.items
          .filter((s) => s.type === 'nobody-serves' || s.type === 'flow')
          .map((s) => on.client.cancelSession(s.id)),
      );
    }
    // The session runs with them: the runner claims it with the type's timeout.
    const run = await api.client.createSession({ type: 'report-defaults' });
    const done = await api.client.waitUntilDone(run.id, { timeoutMs: 15_000 });
    expect(done).toMatchObject({ status: 'succeeded', timeoutMs: 4500, maxAttempts: 3 });
  });

  it('are looked up with the schema, cached as it is: one query for many enqueues, and a new registration applies at once everywhere', async () => {
    // Warm both replicas' lookups, then count the lookups of ten enqueues.
    await api.client.createSession({ type: 'report-defaults', runAt: '2999-01-01T00:00:00Z' });
    await replica.client.createSession({ type: 'report-defaults', runAt: '2999-01-01T00:00:00Z' });
    const original = api.db.query.bind(api.db);
    let lookups = 0;
    (api.db as { query: unknown }).query = (...args: Parameters<typeof original>) => {
      const text = typeof args[0] === 'string' ? args[0] : '';
      if (text.includes('FROM session_types')) lookups++;
      return original(...args);
    };
    try {
      for (let i = 0; i < 5; i++) {
        for (const on of [api, replica]) {
          const s = await on.client.createSession({ type: 'report-defaults', runAt: '2999-01-01T00:00:00Z' });
          expect(s.timeoutMs).toBe(4500);
        }
      }
      // Within the cache's 2 s at most one more lookup per replica.
      expect(lookups).toBeLessThanOrEqual(2);
    } finally {
      (api.db as { query: unknown }).query = original;
    }
    // Another runner registers the type anew with other defaults: its registration is the newest (the same
    // schema, none, registered later), and the replica that cached the old defaults hears of it at once.
    const heard = replica.app.sessionTypes.invalidations;
    await api.runnerClient.heartbeat('typed-defaults', {
      activeSessions: 0,
      maxConcurrency: 1,
      sessions: [],
    });
    await api.runnerClient.registerTypes('typed-defaults', {
      types: [{ name: 'report-defaults', schema: null, timeoutMs: 7000 }],
    });
    await waitFor(() => replica.app.sessionTypes.invalidations > heard, { what: 'the replica notified' });
    for (const on of [api, replica]) {
      // Both defaults come from the one registration in force: maxAttempts is the API's again.
      expect(
        await on.client.createSession({ type: 'report-defaults', runAt: '2999-01-01T00:00:00Z' }),
      ).toMatchObject({
        timeoutMs: 7000,
        maxAttempts: 1,
      });
      expect(await typeView(on, 'report-defaults')).toMatchObject({ timeoutMs: 7000 });
      expect((await typeView(on, 'report-defaults')).maxAttempts).toBeUndefined();
    }
    await api.runnerClient.stopRunner('typed-defaults');
    const back = await waitFor(
      async () => {
        const s = await replica.client.createSession({
          type: 'report-defaults',
          runAt: '2999-01-01T00:00:00Z',
        });
        return s.timeoutMs === 4500 ? s : undefined;
      },
      { what: 'typed-1’s defaults again', timeoutMs: 5000 },
    );
    expect(back.maxAttempts).toBe(3);
    await api.db.query(`DELETE FROM sessions WHERE run_at > '2998-01-01'`);
  });

  it('out of bounds, or given for flow, are refused with their path, changing nothing', async () => {
    const reg = (types: Parameters<TestApi['runnerClient']['registerTypes']>[1]['types']) =>
      api.runnerClient.registerTypes('typed-bad-defaults', { types });
    await expect(reg([{ name: 'a', schema: null, timeoutMs: 99 }])).rejects.toMatchObject({
      status: 400,
      path: 'body.types.0.timeoutMs',
    });
    await expect(
      reg([
        { name: 'a', schema: null },
        { name: 'b', schema: null, maxAttempts: 101 },
      ]),
    ).rejects.toMatchObject({ status: 400, path: 'body.types.1.maxAttempts' });
    await expect(reg([{ name: 'a', schema: null, maxAttempts: 1.5 }])).rejects.toMatchObject({
      status: 400,
      path: 'body.types.0.maxAttempts',
    });
    await expect(reg([{ name: 'flow', schema: null, timeoutMs: 5000 }])).rejects.toMatchObject({
      status: 400,
      path: 'body.types.0.timeoutMs',
      message: /flow is built in/,
    });
    const { rows } = await api.db.query(`SELECT 1 FROM session_types WHERE runner_id = 'typed-bad-defaults'`);
    expect(rows).toHaveLength(0);
  });
});

describe('registrations', () => {
  it('are refused with the path of the bad field, changing nothing', async () => {
    const reg = (types: Parameters<TestApi['runnerClient']['registerTypes']>[1]['types']) =>
      api.runnerClient.registerTypes('typed-bad', { types });
    await expect(
      reg([
        { name: 'a', schema: null },
        { name: 'a', schema: null },
      ]),
    ).rejects.toMatchObject({ status: 400, path: 'body.types.1.name' });
    await expect(
      reg([{ name: 'big', schema: { type: 'object', description: 'x'.repeat(300 * 1024) } }]),
    ).rejects.toMatchObject({ status: 400, path: 'body.types.0.schema', message: /256 KiB/ });
    await expect(reg([{ name: 'odd', schema: { type: 'nonsense' } }])).rejects.toMatchObject({
      status: 400,
      path: 'body.types.0.schema',
      message: /not a JSON Schema the API can use/,
    });
    await expect(
      reg([{ name: 'old', schema: { $schema: 'http://json-schema.org/draft-04/schema#', type: 'object' } }]),
    ).rejects.toMatchObject({
      status: 400,
      path: 'body.types.0.schema',
      message: /draft 2020-12 or draft-07/,
    });
    await expect(reg([{ name: 'flow', schema: { type: 'object' } }])).rejects.toMatchObject({
      status: 400,
      path: 'body.types.0.schema',
    });
    await expect(reg([{ name: 'bad name!', schema: null }])).rejects.toMatchObject({
      status: 400,
      path: 'body.types.0.name',
    });
    await expect(
      reg(Array.from({ length: 201 }, (_, i) => ({ name: `t${i}`, schema: null }))),
    ).rejects.toMatchObject({ status: 400, path: 'body.types' });
    const { rows } = await api.db.query(`SELECT 1 FROM session_types WHERE runner_id = 'typed-bad'`);
    expect(rows).toHaveLength(0);
  });

  it('take schemas with $id (a refused one does not hold it), recursive ones and defaults', async () => {
    const $id = 'https://schemas.test/tree';
    await expect(
      api.runnerClient.registerTypes('typed-ids', {
        types: [{ name: 'tree', schema: { $id, type: 'nonsense' } }],
      }),
    ).rejects.toMatchObject({ status: 400, path: 'body.types.0.schema' });
    // A tree as zod 4 writes z.lazy recursion: the root referred to as #.
    const tree = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      $id,
      type: 'object',
      properties: { n: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#' } } },
      required: ['n'],
    };
    await api.runnerClient.heartbeat('typed-ids', { activeSessions: 0, maxConcurrency: 1, sessions: [] });
    await api.runnerClient.registerTypes('typed-ids', { types: [{ name: 'tree', schema: tree }] });
    await expect(
      api.client.createSession({
        type: 'tree',
        input: { n: 1, kids: [{ n: 2 }, { n: 3, kids: [{ n: 'x' }] }] },
      }),
    ).rejects.toMatchObject({ status: 400, path: 'body.input.kids.1.kids.0.n' });
    // Another schema under the same $id (another version) compiles beside it.
    await api.runnerClient.registerTypes('typed-ids', {
      types: [{ name: 'tree', schema: { ...tree, required: ['n', 'label'] } }],
    });
    await expect(api.client.createSession({ type: 'tree', input: { n: 1 } })).rejects.toMatchObject({
      status: 400,
      path: 'body.input.label',
    });
    // A required field with a default is filled in as the runner does, on a copy: the input is stored as sent.
    await api.runnerClient.registerTypes('typed-ids', {
      types: [
        {
          name: 'defaults',
          schema: { type: 'object', properties: { n: { type: 'integer', default: 1 } }, required: ['n'] },
        },
      ],
    });
    const created = await api.client.createSession({ type: 'defaults', input: {} });
    expect(created).toMatchObject({ input: {} });
    expect(created.warnings).toBeUndefined();
    await expect(api.client.createSession({ type: 'defaults', input: { n: 'x' } })).rejects.toMatchObject({
      path: 'body.input.n',
    });
    await api.runnerClient.stopRunner('typed-ids');
  });

  it('a schema the API refuses is registered by the runner without one, with the reason', async () => {
    const r = await startInProcessRunner(api, {
      runnerId: 'typed-old-draft',
      types: [
        {
          name: 'old-draft',
          browser: false,
          inputJsonSchema: { schema: { $schema: 'http://json-schema.org/draft-04/schema#', type: 'object' } },
        },
      ],
    });
    try {
      const view = await typeView(api, 'old-draft');
      expect(view.schema).toBeNull();
      expect(view.note).toMatch(/the API refused its input schema.*draft 2020-12 or draft-07/);
      expect(view.runners.map((x) => x.id)).toEqual(['typed-old-draft']);
    } finally {
      await r.stop();
    }
  });

  it('when live runners disagree, the newest schema is checked and the conflict is shown', async () => {
    const firstHash = (await typeView(api, 'fetch-page')).schemaHash;
    // The replica has looked fetch-page up (and keeps it a moment): the registration's NOTIFY clears it.
    await expect(
      replica.client.createSession({ type: 'fetch-page', input: { url: 42 } }),
    ).rejects.toMatchObject({ status: 400 });
    const heard = replica.app.sessionTypes.invalidations;
    await api.runnerClient.heartbeat('typed-2', { activeSessions: 0, maxConcurrency: 1, sessions: [] });
    const newer = {
      type: 'object',
      properties: { url: { type: 'string' }, depth: { type: 'integer' } },
      required: ['url', 'depth'],
    };
    const reply = await api.runnerClient.registerTypes('typed-2', {
      types: [{ name: 'fetch-page', schema: newer }],
    });
    const newHash = reply.types[0]?.schemaHash;
    expect(newHash).toMatch(/^[0-9a-f]{64}$/);
    expect(newHash).not.toBe(firstHash);
    await waitFor(() => replica.app.sessionTypes.invalidations > heard, { what: 'the replica notified' });
    for (const on of [api, replica]) {
      const view = await typeView(on, 'fetch-page');
      expect(view.schemaHash).toBe(newHash);
      expect(view.schema).toEqual(newer);
      expect(view.runners.map((x) => x.id).sort()).toEqual(['typed-1', 'typed-2']);
      expect(view.conflict?.schemas).toEqual([
        { schemaHash: newHash, runners: ['typed-2'] },
        { schemaHash: firstHash, runners: ['typed-1'] },
      ]);
      await expect(
        on.client.createSession({ type: 'fetch-page', input: { url: 'https://a.test/' } }),
      ).rejects.toMatchObject({ status: 400, path: 'body.input.depth' });
    }
    // typed-1 registering its (older) schema again does not make it the newest.
    const { rows: own } = await api.db.query<{
      type: string;
      schema: Record<string, unknown> | null;
      note: string | null;
    }>(`SELECT type, schema, note FROM session_types WHERE runner_id = 'typed-1' ORDER BY type`);
    await api.runnerClient.registerTypes('typed-1', {
      types: own.map((o) => ({ name: o.type, schema: o.schema, ...(o.note ? { note: o.note } : {}) })),
    });
    expect((await typeView(api, 'fetch-page')).schemaHash).toBe(newHash);
    // Once typed-2 is not live, typed-1's schema is the one among live runners again.
    await api.runnerClient.stopRunner('typed-2');
    const view = await typeView(replica, 'fetch-page');
    expect(view.schemaHash).toBe(firstHash);
    expect(view.conflict).toBeUndefined();
    expect(view.runners.find((x) => x.id === 'typed-2')).toMatchObject({ status: 'stopped', live: false });
    // Another replica may use what it looked up for a moment longer (2 s at most).
    const accepted = await waitFor(
      () => replica.client.createSession({ type: 'fetch-page', input: { url: 'https://c.test/' } }),
      { what: 'the replica to check typed-1’s schema', timeoutMs: 5000 },
    );
    expect(accepted.warnings).toBeUndefined();
  });

  it('of runners gone from the fleet view keep their last schema, with runners: []', async () => {
    const gone = await startTestApi('session-types-gone', {
      db: { db: api.db, url: api.databaseUrl },
      deps: { runnerRetentionMs: 0 },
    });
    try {
      expect(await runner.stop()).toBe(0);
      await waitFor(async () => (await api.client.runners()).every((r) => r.status === 'stopped'), {
        what: 'every runner stopped',
      });
      const view = await typeView(gone, 'fetch-page');
      expect(view.runners).toEqual([]);
      // The newest schema of all (typed-2's) applies; nothing warns that the type is unregistered.
      expect(view.schema).toMatchObject({ required: ['url', 'depth'] });
      await expect(
        gone.client.createSession({ type: 'fetch-page', input: { url: 'https://a.test/' } }),
      ).rejects.toMatchObject({ status: 400, path: 'body.input.depth' });
      // A registration prunes the gone runners' rows but the newest of each type.
      await gone.runnerClient.heartbeat('typed-3', { activeSessions: 0, maxConcurrency: 1, sessions: [] });
      await gone.runnerClient.registerTypes('typed-3', { types: [{ name: 'other', schema: null }] });
      const { rows } = await api.db.query<{ type: string; runner_id: string }>(
        `SELECT type, runner_id FROM session_types WHERE type = 'fetch-page' ORDER BY runner_id`,
      );
      expect(rows).toEqual([{ type: 'fetch-page', runner_id: 'typed-2' }]);
    } finally {
      await gone.stop();
    }
  });
});

it('a runner registers again when it reaches a fresh API and database', async () => {
  const fresh = await startTestApi('session-types-fresh');
  // A front the runner talks to, moved from one API to the other (a new deployment behind the same URL).
  let target = new URL(api.url);
  const front: Server = createServer((req, res) => {
    const out = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
  const r = await startInProcessRunner(
    { ...api, url: frontUrl },
    {
      runnerId: 'typed-moving',
      types: [
        { name: 'moving', browser: false, inputJsonSchema: { schema: { type: 'object', required: ['a'] } } },
      ],
    },
  );
  try {
    expect((await typeView(api, 'moving')).runners.map((x) => x.id)).toEqual(['typed-moving']);
    target = new URL(fresh.url);
    const view = await waitFor(
      async () => {
        const v = (await fresh.client.types()).find((t) => t.name === 'moving');
        return v && v.runners.length > 0 ? v : undefined;
      },
      { what: 'the runner registered on the fresh API', timeoutMs: 10_000 },
    );
    expect(view).toMatchObject({
      schema: { required: ['a'] },
      runners: [{ id: 'typed-moving', live: true }],
    });
    await expect(fresh.client.createSession({ type: 'moving', input: {} })).rejects.toMatchObject({
      status: 400,
      path: 'body.input.a',
    });
  } finally {
    await r.stop();
    await new Promise((done) => front.close(done));
    await fresh.stop();
  }
});
