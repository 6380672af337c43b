import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { API_TOKEN, RUNNER_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';

/**
 * Seeded fuzzing of every endpoint in the OpenAPI document: malformed JSON, wrong types, huge strings,
 * deep nesting, odd unicode, bad ids and bad query strings. No answer may be a 5xx, the server must stay
 * up, and no rejected request may change the database. FUZZ_SEED=<n> replays a run.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 20261129);
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 1500);

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let api: TestApi;
let queuedId = '';
let runningId = '';
let lease = '';

interface Endpoint {
  method: string;
  path: string;
  scope: string;
}
let endpoints: Endpoint[] = [];

beforeAll(async () => {
  api = await startTestApi('fuzz', { auth: true, maxBodyBytes: 1024 * 1024 });
  queuedId = (await api.client.createSession({ type: 'fuzz-seed', input: { a: 1 } })).id;
  await api.client.createSession({ type: 'fuzz-run', priority: 5 });
  const { sessions } = await api.runnerClient.claim('fuzz-runner', { slots: 1, types: ['fuzz-run'] });
  runningId = sessions[0]!.id;
  lease = sessions[0]!.leaseToken;
  const res = await fetch(`${api.url}/openapi.json`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
  const doc = (await res.json()) as { paths: Record<string, Record<string, { 'x-scope': string }>> };
  for (const [p, ops] of Object.entries(doc.paths))
    for (const [m, op] of Object.entries(ops))
      endpoints.push({ method: m.toUpperCase(), path: p, scope: op['x-scope'] });
  // Long-polls are fuzzed, but with waits bounded by the schemas' answers below.
  endpoints = endpoints.filter((e) => e.path !== '/' && !e.path.startsWith('/ui/'));
});
afterAll(async () => {
  await api.stop();
});

async function digest(): Promise<string> {
  const { rows } = await api.db.query<{ d: string }>(
    `SELECT concat_ws(' ',
       (SELECT count(*) FROM sessions),
       (SELECT md5(coalesce(string_agg(s::text, '|' ORDER BY s.id), '')) FROM sessions s),
       (SELECT count(*) FROM runner_health),
       (SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r.runner_id), '')) FROM runner_health r),
       (SELECT md5(coalesce(string_agg(c::text, '|'), '')) FROM scheduler_config c),
       (SELECT count(*) FROM schema_migrations)) AS d`,
  );
  return rows[0]!.d;
}

const deepArray = (n: number) => '['.repeat(n) + ']'.repeat(n);
const deepObject = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);

function generators(r: () => number) {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const oddStrings = [
    '',
    ' ',
    'a'.repeat(100_000),
    '\u0000',
    'nul\u0000inside',
    '\ud800',
    'x\udfffy',
    '\ud83d\ude00',
    '\u202e\u200b\ufeff',
    '%00',
    '../../etc/passwd',
    '<script>alert(1)</script>',
    "'; DROP TABLE sessions; --",
    '{{input.x}}',
    'ünïcödé',
    '\n\r\t',
    'null',
  ];
  const oddValues: unknown[] = [
    null,
    true,
    false,
    0,
    -1,
    1.5,
    -0,
    2 ** 31,
    2 ** 53 + 1,
    1e308,
    [],
    {},
    [null],
    { '': 1 },
    { __proto__: { polluted: true } },
    { constructor: { prototype: { polluted: true } } },
    ...oddStrings,
  ];
  const oddValue = (): unknown => {
    const v = pick(oddValues);
    if (r() < 0.1) return JSON.parse(deepArray(1 + Math.floor(r() * 200))) as unknown;
    return v;
  };
  const ids = () =>
    pick([
      queuedId,
      runningId,
      '01900000-0000-7000-8000-000000000000',
      queuedId.toUpperCase(),
      'nope',
      '0',
      '-1',
      'null',
      '%00',
      '%2E%2E%2F%2E%2E',
      '%F0%9F%98%80',
      '%ED%A0%80',
      'x'.repeat(300),
      // Past the router's parameter limit (the schemas' longest, percent-encoded): 414.
      'x'.repeat(700),
      `${queuedId}%00`,
      `${queuedId}x`,
    ]);
  const names = () =>
    pick(['shot.png', '..%2Fx', '.hidden', 'a%5Cb', '%00', 'x'.repeat(250), 'ok.txt', '%E2%80%AE.png']);
  const runnerIds = () =>
    pick(['fuzz-runner', 'other', '', '%20', '-lead', 'x'.repeat(300), '%00', 'a%2Fb', 'r%C3%BCn']);
  const queries = () =>
    pick([
      '',
      '?limit=-1',
      '?limit=abc',
      '?limit=1e400',
      '?limit=0',
      '?limit=1001',
      '?limit=1&limit=2',
      '?status=bogus',
      '?status=queued&status=running',
      '?cursor=garbage',
      `?cursor=${Buffer.from('not-a-uuid').toString('base64url')}`,
      '?cursor=%00',
      '?type=%00',
      '?type=' + 'x'.repeat(5000),
      '?timeoutMs=-1',
      '?timeoutMs=abc',
      '?timeoutMs=300001',
      '?timeoutMs=1e20',
      '?unknown=1',
      '?a[b][c]=1',
      '?%ZZ=1',
      '?runnerId=%00',
      '?=',
      '?&&&',
    ]);
  return { pick, oddValue, oddStrings, ids, names, runnerIds, queries };
}

/** A valid body for each endpoint, which the fuzzer then breaks. */
function template(e: Endpoint): Record<string, unknown> | undefined {
  const key = `${e.method} ${e.path}`;
  switch (key) {
    case 'POST /v1/sessions':
      return { type: 'fuzz', input: { a: 1 }, priority: 1, maxAttempts: 2, timeoutMs: 1000 };
    case 'POST /v1/sessions/batch':
      return {
        sessions: [
          { type: 'fuzz' },
          { type: 'flow', input: { steps: [{ action: 'goto', url: 'http://x.test/' }] } },
        ],
      };
    case 'POST /v1/sessions/{id}/complete':
      return { leaseToken: lease, status: 'succeeded', result: { ok: true } };
    case 'PUT /v1/config/scheduler':
      return { maxConcurrency: 3, pollIntervalMs: 5000 };
    case 'POST /v1/runners/{runnerId}/claim':
      return { slots: 1, types: ['fuzz-nothing'], waitMs: 0 };
    case 'POST /v1/runners/{runnerId}/heartbeat':
      return { activeSessions: 0, maxConcurrency: 1, sessions: [{ id: runningId, leaseToken: lease }] };
    case 'POST /v1/runners/{runnerId}/stop':
      return {};
    default:
      return e.method === 'POST' || e.method === 'PUT' ? {} : undefined;
  }
}

/** Breaks one field at a random depth of a valid body. */
function mutate(body: Record<string, unknown>, g: ReturnType<typeof generators>, r: () => number): unknown {
  const copy = structuredClone(body);
  const keys = Object.keys(copy);
  const roll = r();
  if (roll < 0.15 || keys.length === 0) {
    copy[g.pick(['unknownField', '__proto__', 'constructor', 'Type', ''])] = g.oddValue();
    return copy;
  }
  const k = g.pick(keys);
  if (roll < 0.3) {
    delete copy[k];
    return copy;
  }
  const v = copy[k];
  if (Array.isArray(v) && v.length > 0 && typeof v[0] === 'object' && r() < 0.6) {
    const inner = mutate(v[0] as Record<string, unknown>, g, r);
    // Over the batch limit, with items small enough to keep the body under a few MB.
    const many = r() < 0.2 && JSON.stringify(inner).length < 200;
    copy[k] = many ? Array.from({ length: 10_001 }, () => inner) : [inner];
    return copy;
  }
  if (v && typeof v === 'object' && !Array.isArray(v) && r() < 0.5) {
    copy[k] = mutate(v as Record<string, unknown>, g, r);
    return copy;
  }
  copy[k] = g.oddValue();
  return copy;
}

interface Req {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

/** Methods no route of a path serves are 405 with Allow; unknown ones are 404. */
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const;

function makeRequest(e: Endpoint, g: ReturnType<typeof generators>, r: () => number): Req {
  if (r() < 0.05) {
    const method = g.pick(METHODS);
    const req = makeRequest(e, g, () => 0.99);
    if (method !== 'GET') return { ...req, method };
    const { body: _body, ...bodyless } = req;
    return { ...bodyless, method, headers: { authorization: req.headers.authorization ?? '' } };
  }
  const url =
    e.path
      .replace('{id}', () => g.ids())
      .replace('{name}', () => g.names())
      .replace('{runnerId}', () => g.runnerIds())
      .replace('{file}', 'x') + (r() < 0.4 ? g.queries() : e.path.endsWith('/wait') ? '?timeoutMs=0' : '');
  // Long-polls must not hang the run: a wait with no usable timeout gets one appended.
  const fixedUrl =
    url.includes('/wait') && !url.includes('timeoutMs=')
      ? `${url}${url.includes('?') ? '&' : '?'}timeoutMs=0`
      : url;
  const token = e.scope === 'runner' ? RUNNER_TOKEN : API_TOKEN;
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (e.path.includes('/artifacts/') && e.method === 'PUT') {
    headers['x-lease-token'] = g.pick([lease, 'nope', '', '00000000-0000-4000-8000-000000000000']);
    headers['content-type'] = g.pick([
      'application/octet-stream',
      'image/png',
      'application/json',
      'text/plain',
    ]);
    return { method: e.method, url: fixedUrl, headers, body: Buffer.alloc(Math.floor(r() * 2000), 7) };
  }
  if (r() < 0.05)
    headers['idempotency-key'] = g.pick(g.oddStrings.filter((s) => !/[\u0000-\u001f\u0100-\uffff]/.test(s)));
  const base = template(e);
  if (base === undefined) {
    // Bodies sent where none is expected.
    if (e.method !== 'GET' && r() < 0.2) {
      headers['content-type'] = 'application/json';
      return { method: e.method, url: fixedUrl, headers, body: '{"x":1}' };
    }
    return { method: e.method, url: fixedUrl, headers };
  }
  headers['content-type'] = 'application/json';
  const roll = r();
  let body: string;
  if (roll < 0.12) {
    body = g.pick([
      '{',
      '{"type":}',
      '[',
      'nul',
      '"\\ud800"',
      '{"a":1}garbage',
      '\ufeff{}',
      '{"a":1,}',
      "{'a':1}",
      '{"a":"\\u0000"}',
      '{"type":"x","type":"y"}',
      '',
      'NaN',
      '1e999999',
      '{"a":' + '1'.repeat(5000) + '}',
    ]);
  } else if (roll < 0.2) {
    body = g.pick([deepArray(10_000), deepObject(10_000), deepArray(100_000)]);
  } else if (roll < 0.3) {
    // Deep nesting inside a free-form field (input, result).
    const deep = r() < 0.5 ? deepArray(10_000) : deepObject(5000);
    body = JSON.stringify({ ...base, input: '__DEEP__', result: '__DEEP__' }).replace(/"__DEEP__"/g, deep);
  } else if (roll < 0.4) {
    headers['content-type'] = g.pick([
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data',
      'application/xml',
    ]);
    body = JSON.stringify(base);
  } else if (roll < 0.45) {
    body = JSON.stringify(g.oddValue());
  } else {
    body = JSON.stringify(mutate(base, g, r));
  }
  return { method: e.method, url: fixedUrl, headers, body };
}

function isErrorBody(text: string): boolean {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; path?: unknown } };
    const keys = Object.keys(body);
    return (
      keys.length === 1 &&
      keys[0] === 'error' &&
      typeof body.error?.code === 'string' &&
      typeof body.error.message === 'string' &&
      (body.error.path === undefined || typeof body.error.path === 'string')
    );
  } catch {
    return false;
  }
}

describe('fuzzing every endpoint', () => {
  it(`answers ${REQUESTS} seeded bad requests (seed ${SEED}) without a 5xx or a change to the database`, async () => {
    expect(endpoints.length).toBeGreaterThanOrEqual(17);
    const r = rng(SEED);
    const g = generators(r);
    const started = Date.now();
    const problems: string[] = [];
    const statuses = new Map<number, number>();
    let before = await digest();
    for (let i = 0; i < REQUESTS && problems.length < 20; i++) {
      const e = g.pick(endpoints);
      const req = makeRequest(e, g, r);
      let status: number;
      let text = '';
      try {
        const res = await fetch(`${api.url}${req.url}`, {
          method: req.method,
          headers: req.headers,
          ...(req.body === undefined
            ? {}
            : { body: typeof req.body === 'string' ? req.body : new Uint8Array(req.body) }),
          signal: AbortSignal.timeout(10_000),
        });
        status = res.status;
        text = await res.text();
      } catch (err) {
        problems.push(
          `#${i} ${req.method} ${req.url.slice(0, 120)}: request failed: ${(err as Error).message}`,
        );
        continue;
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      const describe = () =>
        `#${i} ${req.method} ${req.url.slice(0, 120)} body=${String(req.body ?? '').slice(0, 120)} → ${status} ${text.slice(0, 200)}`;
      if (status >= 500) problems.push(describe());
      // Every refusal, the router's and Node's HTTP parser's included, has the documented shape.
      if (status >= 400 && req.method !== 'HEAD' && !isErrorBody(text))
        problems.push(`no error body: ${describe()}`);
      if (req.method !== 'GET') {
        const after = await digest();
        if (status >= 400 && after !== before)
          problems.push(`rejected but changed the database: ${describe()}`);
        before = after;
      }
    }
    const ms = Date.now() - started;
    expect(problems, `seed ${SEED}`).toEqual([]);
    // Mostly rejections; plain GETs without a bad query are valid and fine.
    const rejected = [...statuses].filter(([s]) => s >= 400).reduce((n, [, c]) => n + c, 0);
    expect(rejected).toBeGreaterThan(REQUESTS * 0.4);
    expect(ms).toBeLessThan(60_000);
    // Still up and serving.
    expect((await api.client.health()).ok).toBe(true);
    expect((await api.client.getSession(queuedId)).type).toBe('fuzz-seed');
  });

  it('rejects NUL characters in session inputs with 400, and stores a completion without them', async () => {
    const before = await digest();
    for (const body of [
      { type: 'fuzz', input: { s: 'a\u0000b' } },
      { type: 'fuzz', input: { 'k\u0000': 1 } },
      { type: 'fuzz', input: { s: '\ud800' } },
      { type: 'fuzz', idempotencyKey: 'k\u0000' },
    ]) {
      const res = await fetch(`${api.url}/v1/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect(await digest()).toBe(before);
    // A runner's report is kept: what Postgres cannot store is replaced, never a 500.
    const own = await api.client.createSession({ type: 'fuzz-nul' });
    const { sessions } = await api.runnerClient.claim('fuzz-nul-runner', { slots: 1, types: ['fuzz-nul'] });
    const res = await fetch(`${api.url}/v1/sessions/${own.id}/complete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${RUNNER_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        leaseToken: sessions[0]!.leaseToken,
        status: 'failed',
        errorMessage: 'bad\u0000byte',
      }),
    });
    expect(res.status).toBeLessThan(500);
    if (res.status === 200)
      expect((await api.client.getSession(own.id)).errorMessage).not.toContain('\u0000');
  });

  it('rejects 10,000 levels of nesting in session input and results with 400', async () => {
    const before = await digest();
    const deep = deepArray(10_000);
    const create = await fetch(`${api.url}/v1/sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      body: `{"type":"fuzz","input":${deep}}`,
    });
    expect(create.status).toBe(400);
    const complete = await fetch(`${api.url}/v1/sessions/${runningId}/complete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${RUNNER_TOKEN}`, 'content-type': 'application/json' },
      body: `{"leaseToken":"${lease}","status":"succeeded","result":${deep}}`,
    });
    expect(complete.status).toBe(400);
    expect(await digest()).toBe(before);
  });
});

describe('fuzzing the CLI arguments', () => {
  it('answers 300 seeded bad command lines with exit 1 or 2 and a message, never a crash or a stack trace', async () => {
    const r = rng(SEED + 1);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    // Commands that start servers or wait for results are left to the e2e tests.
    const commands = ['enqueue', 'sessions', 'status', 'cancel'];
    const flags = [
      '--input',
      '--input-file',
      '--priority',
      '--run-at',
      '--timeout-ms',
      '--max-attempts',
      '--idempotency-key',
      '--count',
      '--batch-file',
      '--status',
      '--type',
      '--runner',
      '--limit',
      '--cursor',
      '--json',
      '--api-base-url',
      '--bogus',
      '-x',
      '--',
      '--json=1',
      '--limit=',
    ];
    const values = [
      '',
      '{bad',
      '{"a":1}',
      '[]',
      'null',
      '-1',
      '0',
      '3',
      '1e3',
      'abc',
      '99999999999999999999',
      '\u0000',
      '\ud800',
      'x'.repeat(10_000),
      '../../etc/passwd',
      '/nonexistent/file.json',
      'http://127.0.0.1:1',
      'postgres://x',
      'queued',
      'bogus',
      '01900000-0000-7000-8000-000000000000',
      'not-a-uuid',
      '2026-13-45T99:99:99Z',
    ];
    const stdout: string[] = [];
    const stderr: string[] = [];
    const outSpy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout.push(String(chunk));
      return true;
    });
    const errSpy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
    const problems: string[] = [];
    const codes = new Map<number, number>();
    try {
      for (let i = 0; i < 300; i++) {
        const argv = [pick(commands)];
        const n = Math.floor(r() * 4);
        for (let k = 0; k < n; k++) {
          if (r() < 0.3) argv.push(pick(values));
          else {
            argv.push(pick(flags));
            if (r() < 0.8) argv.push(pick(values));
          }
        }
        stderr.length = 0;
        let code: number;
        try {
          code = await main(argv, { API_BASE_URL: api.url, API_TOKEN });
        } catch (err) {
          problems.push(`${JSON.stringify(argv).slice(0, 200)} threw ${(err as Error).message}`);
          continue;
        }
        codes.set(code, (codes.get(code) ?? 0) + 1);
        const said = stderr.join('');
        if (![0, 1, 2].includes(code)) problems.push(`${JSON.stringify(argv).slice(0, 200)} exited ${code}`);
        if (code !== 0 && !said.startsWith('sfw '))
          problems.push(`${JSON.stringify(argv).slice(0, 200)}: no message`);
        if (/\n\s+at .+:\d+:\d+/.test(said))
          problems.push(`${JSON.stringify(argv).slice(0, 200)}: stack trace`);
        if (/internal error|\b5\d\d\b/.test(said))
          problems.push(`${JSON.stringify(argv).slice(0, 200)}: ${said.slice(0, 200)}`);
      }
    } finally {
      outSpy.mockRestore();
      errSpy.mockRestore();
    }
    expect(problems, `seed ${SEED + 1}`).toEqual([]);
    expect((codes.get(2) ?? 0) + (codes.get(1) ?? 0)).toBeGreaterThan(150);
  });
});
