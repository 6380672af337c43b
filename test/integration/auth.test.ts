import { Writable } from 'node:stream';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { checkAuthConfig } from '../../src/server/main.js';
import { artifactPath } from '../../src/server/routes/artifacts.js';
import { buildApp } from '../../src/server/app.js';
import { TokenBuckets } from '../../src/server/ratelimit.js';
import { ApiError } from '@session-framework/sdk';
import { API_TOKEN, RUNNER_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';
import { freshDb } from '../helpers/db.js';

let api: TestApi;
let sessionId: string;

beforeAll(async () => {
  api = await startTestApi('auth', { auth: true, maxArtifactBytes: 4096 });
  sessionId = (await api.client.createSession({ type: 'auth-probe' })).id;
});
afterAll(async () => {
  await api.stop();
});

type Who = 'none' | 'bad' | 'client' | 'runner';
const TOKENS: Record<Who, string | undefined> = {
  none: undefined,
  bad: 'not-a-real-token',
  client: API_TOKEN,
  runner: RUNNER_TOKEN,
};

async function send(
  method: string,
  url: string,
  who: Who,
  extra: { headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<{ status: number; body: string; headers: Headers }> {
  const headers: Record<string, string> = { ...extra.headers };
  const token = TOKENS[who];
  if (token) headers.authorization = `Bearer ${token}`;
  let body = extra.body;
  if (body === undefined && (method === 'POST' || method === 'PUT')) {
    body = '{}';
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${api.url}${url}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : new Uint8Array(body) }),
  });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

interface Endpoint {
  method: string;
  path: string;
  scope: string;
}

async function endpoints(): Promise<Endpoint[]> {
  const res = await send('GET', '/openapi.json', 'client');
  expect(res.status).toBe(200);
  const doc = JSON.parse(res.body) as { paths: Record<string, Record<string, { 'x-scope': string }>> };
  const out: Endpoint[] = [];
  for (const [p, ops] of Object.entries(doc.paths))
    for (const [m, op] of Object.entries(ops))
      out.push({ method: m.toUpperCase(), path: p, scope: op['x-scope'] });
  return out;
}

function concrete(e: Endpoint): string {
  const url = e.path
    .replace('{id}', sessionId)
    .replace('{name}', 'shot.png')
    .replace('{runnerId}', 'auth-runner')
    .replace('{file}', 'app.js');
  // Long-polls answer at once in the matrix.
  return url.endsWith('/wait') ? `${url}?timeoutMs=0` : url;
}

describe('auth matrix over every endpoint of the OpenAPI document', () => {
  it('lists the endpoints of the design with their scopes', async () => {
    const list = await endpoints();
    const keys = new Set(list.map((e) => `${e.method} ${e.path}`));
    for (const k of [
      'POST /v1/sessions',
      'POST /v1/sessions/batch',
      'GET /v1/sessions',
      'GET /v1/sessions/{id}',
      'GET /v1/sessions/{id}/wait',
      'POST /v1/sessions/{id}/cancel',
      'GET /v1/sessions/{id}/artifacts/{name}',
      'PUT /v1/sessions/{id}/artifacts/{name}',
      'POST /v1/sessions/{id}/complete',
      'GET /v1/queue',
      'GET /v1/runners',
      'GET /v1/alerts',
      'GET /v1/config/scheduler',
      'PUT /v1/config/scheduler',
      'POST /v1/runners/{runnerId}/claim',
      'POST /v1/runners/{runnerId}/heartbeat',
      'POST /v1/runners/{runnerId}/stop',
      'GET /healthz',
      'GET /readyz',
      'GET /openapi.json',
      'GET /metrics',
    ])
      expect(keys, k).toContain(k);
    for (const e of list) expect(['public', 'client', 'runner', 'ops', 'read'], e.path).toContain(e.scope);
  });

  it('answers 401 without a token or with a wrong one, 403 for the wrong scope, and lets the right token through', async () => {
    const list = await endpoints();
    const problems: string[] = [];
    const expectStatus = (e: Endpoint, who: Who, ok: (s: number) => boolean, got: number, want: string) => {
      if (!ok(got)) problems.push(`${e.method} ${e.path} as ${who}: got ${got}, want ${want}`);
    };
    for (const e of list) {
      const url = concrete(e);
      const headers: Record<string, string> =
        e.method === 'PUT' && e.path.includes('artifacts')
          ? {
              'content-type': 'application/octet-stream',
              'x-lease-token': '00000000-0000-4000-8000-000000000000',
            }
          : {};
      const opts =
        e.method === 'PUT' && e.path.includes('artifacts') ? { headers, body: Buffer.from('x') } : {};
      const res: Record<Who, number> = {
        none: (await send(e.method, url, 'none', opts)).status,
        bad: (await send(e.method, url, 'bad', opts)).status,
        client: (await send(e.method, url, 'client', opts)).status,
        runner: (await send(e.method, url, 'runner', opts)).status,
      };
      const passes = (s: number) => s !== 401 && s !== 403 && s < 500;
      if (e.scope === 'public') {
        for (const who of ['none', 'bad', 'client', 'runner'] as const)
          expectStatus(e, who, (s) => s !== 401 && s !== 403, res[who], 'open');
        continue;
      }
      expectStatus(e, 'none', (s) => s === 401, res.none, '401');
      expectStatus(e, 'bad', (s) => s === 401, res.bad, '401');
      if (e.scope === 'runner') {
        expectStatus(e, 'client', (s) => s === 403, res.client, '403');
        expectStatus(e, 'runner', passes, res.runner, 'through');
      } else if (e.scope === 'read') {
        expectStatus(e, 'client', passes, res.client, 'through');
        // Not holding the session: refused.
        expectStatus(e, 'runner', (s) => s === 403, res.runner, '403');
      } else {
        expectStatus(e, 'client', passes, res.client, 'through');
        expectStatus(e, 'runner', (s) => s === 403, res.runner, '403');
      }
    }
    expect(problems).toEqual([]);
  });

  it('says what to send in 401 and 403 answers', async () => {
    const missing = await send('GET', '/v1/queue', 'none');
    expect(JSON.parse(missing.body)).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    expect(missing.body).toContain('Authorization: Bearer');
    const scope = await send('GET', '/v1/queue', 'runner');
    expect(JSON.parse(scope.body)).toMatchObject({ error: { code: 'FORBIDDEN' } });
    expect(scope.body).toContain('API token');
    const lower = await send('GET', '/v1/queue', 'none', {
      headers: { authorization: `bearer ${API_TOKEN}` },
    });
    expect(lower.status).toBe(200);
    const basic = await send('GET', '/v1/queue', 'none', {
      headers: { authorization: `Basic ${API_TOKEN}` },
    });
    expect(basic.status).toBe(401);
    const prefix = await send('GET', '/v1/queue', 'none', {
      headers: { authorization: `Bearer ${API_TOKEN.slice(0, -1)}` },
    });
    expect(prefix.status).toBe(401);
  });
});

describe('a runner token reads and writes only the sessions it holds', () => {
  it('reads a session only with its current lease token', async () => {
    const s = await api.client.createSession({ type: 'held' });
    const other = await api.client.createSession({ type: 'held-other' });
    const { sessions } = await api.runnerClient.claim('holder', { slots: 1, types: ['held'] });
    const held = sessions[0]!;
    expect(held.id).toBe(s.id);

    expect((await api.runnerClient.getSession(s.id, { leaseToken: held.leaseToken })).status).toBe('running');
    await expect(api.runnerClient.getSession(s.id)).rejects.toMatchObject({ httpStatus: 403 });
    await expect(
      api.runnerClient.getSession(s.id, { leaseToken: '00000000-0000-4000-8000-000000000000' }),
    ).rejects.toMatchObject({ httpStatus: 403 });
    // Its lease token is no key to another session.
    await expect(
      api.runnerClient.getSession(other.id, { leaseToken: held.leaseToken }),
    ).rejects.toMatchObject({
      httpStatus: 403,
    });
    // Writes about a session it does not hold are refused and change nothing.
    await expect(
      api.runnerClient.complete(other.id, { leaseToken: held.leaseToken, status: 'succeeded' }),
    ).rejects.toMatchObject({ httpStatus: 409 });
    await expect(
      api.runnerClient.uploadArtifact(other.id, 'x.txt', held.leaseToken, Buffer.from('x')),
    ).rejects.toMatchObject({ httpStatus: 409 });
    expect((await api.client.getSession(other.id)).status).toBe('queued');

    await api.runnerClient.complete(s.id, { leaseToken: held.leaseToken, status: 'succeeded' });
    // Once finished, the lease no longer opens it.
    await expect(api.runnerClient.getSession(s.id, { leaseToken: held.leaseToken })).rejects.toMatchObject({
      httpStatus: 403,
    });
    expect((await api.client.getSession(s.id)).status).toBe('succeeded');
  });
});

describe('checkAuthConfig', () => {
  const LONG_API = 'a'.repeat(16);
  const LONG_RUNNER = 'b'.repeat(16);
  // Names resolve through this table in these tests; `bindsLoopbackOnly` resolves through DNS otherwise.
  const table: Record<string, string[]> = {
    'example.com': ['93.184.215.14'],
    '127.lan.example': ['192.168.1.27'],
    'dev.local': ['127.0.0.1', '10.0.0.5'],
    'lo.internal': ['127.0.0.1', '::1'],
  };
  const resolve = async (host: string) => {
    const found = table[host];
    if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return found;
  };
  const check = (cfg: Parameters<typeof checkAuthConfig>[0]) => checkAuthConfig(cfg, resolve);
  const none = { apiToken: undefined, runnerToken: undefined };

  it('refuses a non-loopback HOST without tokens, naming API_TOKEN', async () => {
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'example.com']) {
      await expect(check({ host, ...none }), host).rejects.toThrow(ConfigError);
      await expect(check({ host, ...none }), host).rejects.toThrow(/API_TOKEN/);
    }
  });

  it('resolves names instead of reading their first characters: 127.lan.example is not loopback', async () => {
    await expect(check({ host: '127.lan.example', ...none })).rejects.toThrow(
      /HOST=127.lan.example is not loopback/,
    );
    // Every address of the name must be loopback.
    await expect(check({ host: 'dev.local', ...none })).rejects.toThrow(/is not loopback/);
    await expect(check({ host: 'lo.internal', ...none })).resolves.toEqual({ loopback: true });
    await expect(check({ host: 'no-such-name.example', ...none })).rejects.toThrow(
      /HOST=no-such-name.example does not resolve/,
    );
    // Through the machine's own resolver too.
    await expect(checkAuthConfig({ host: '127.lan.example.invalid', ...none })).rejects.toThrow(ConfigError);
    await expect(checkAuthConfig({ host: 'localhost', ...none })).resolves.toEqual({ loopback: true });
  });

  it('allows loopback without tokens and any host with both tokens', async () => {
    for (const host of ['127.0.0.1', '127.0.0.2', '::1', '[::1]', 'lo.internal'])
      await expect(check({ host, ...none }), host).resolves.toEqual({ loopback: true });
    await expect(check({ host: '0.0.0.0', apiToken: LONG_API, runnerToken: LONG_RUNNER })).resolves.toEqual({
      loopback: false,
    });
  });

  it('asks beyond loopback for tokens of at least 16 characters, naming the variable', async () => {
    await expect(check({ host: '0.0.0.0', apiToken: 'short', runnerToken: LONG_RUNNER })).rejects.toThrow(
      /^API_TOKEN is 5 characters: beyond loopback .* at least 16/,
    );
    await expect(
      check({ host: '10.1.2.3', apiToken: LONG_API, runnerToken: 'r'.repeat(15) }),
    ).rejects.toThrow(/^RUNNER_TOKEN is 15 characters/);
    // On loopback short tokens are the user's choice.
    await expect(check({ host: '127.0.0.1', apiToken: 'a', runnerToken: 'b' })).resolves.toEqual({
      loopback: true,
    });
  });

  it('refuses half a setup and equal tokens, naming the variable', async () => {
    await expect(check({ host: '127.0.0.1', apiToken: 'a', runnerToken: undefined })).rejects.toThrow(
      /RUNNER_TOKEN/,
    );
    await expect(check({ host: '127.0.0.1', apiToken: undefined, runnerToken: 'b' })).rejects.toThrow(
      /API_TOKEN/,
    );
    await expect(check({ host: '0.0.0.0', apiToken: LONG_API, runnerToken: LONG_API })).rejects.toThrow(
      /must differ/,
    );
  });
});

describe('artifact names', () => {
  it('refuses traversal and hidden names on upload and download, and writes nothing outside the folder', async () => {
    const s = await api.client.createSession({ type: 'art' });
    const { sessions } = await api.runnerClient.claim('art-runner', { slots: 1, types: ['art'] });
    const lease = sessions[0]!.leaseToken;
    const names = [
      '..%2F..%2Fetc%2Fpasswd',
      '..%2f..%2fescape.txt',
      '%2E%2E%2Fescape.txt',
      '...',
      '..%2F',
      '.hidden',
      'a%2Fb',
      'a%5Cb',
      'a%00b.png',
      'sp%20ace.png',
      'x'.repeat(201),
    ];
    for (const name of names) {
      const put = await send('PUT', `/v1/sessions/${s.id}/artifacts/${name}`, 'runner', {
        headers: { 'content-type': 'application/octet-stream', 'x-lease-token': lease },
        body: Buffer.from('payload'),
      });
      // Up to the schemas' longest (percent-encoded) the schema sees the name and says what is wrong.
      expect(put.status, name).toBe(400);
      expect(JSON.parse(put.body), name).toMatchObject({
        error: { code: 'VALIDATION', path: 'params.name' },
      });
      const get = await send('GET', `/v1/sessions/${s.id}/artifacts/${name}`, 'client');
      expect(get.status, name).toBe(400);
    }
    // A literal slash splits the path: no such route.
    const slash = await send('PUT', `/v1/sessions/${s.id}/artifacts/a/b`, 'runner', {
      headers: { 'content-type': 'application/octet-stream', 'x-lease-token': lease },
      body: Buffer.from('payload'),
    });
    expect(slash.status).toBe(404);
    const dotdot = await send('GET', `/v1/sessions/${s.id}/artifacts/../../../etc/passwd`, 'client');
    expect([400, 404]).toContain(dotdot.status);
    expect(dotdot.body).not.toContain('root:');

    const ok = await api.runnerClient.uploadArtifact(s.id, 'shot-1.png', lease, Buffer.from('png'));
    expect(ok.name).toBe('shot-1.png');
    expect(await readdir(api.artifactsDir)).toEqual([s.id]);
    // One file, inside the session's folder (each upload has a folder of its own there).
    const files = await readdir(path.join(api.artifactsDir, s.id), { recursive: true, withFileTypes: true });
    expect(files.filter((f) => f.isFile()).map((f) => f.name)).toEqual(['shot-1.png']);
    expect((await api.client.getArtifact(s.id, 'shot-1.png')).data.toString()).toBe('png');
  });

  it('artifactPath refuses any name that leaves the session folder', () => {
    const id = '01900000-0000-7000-8000-000000000000';
    for (const bad of ['../x', '../../etc/passwd', 'a/b', '/etc/passwd', '..', '.', ''])
      expect(() => artifactPath('/data/artifacts', id, bad), bad).toThrow(/not a safe artifact name/);
    expect(artifactPath('/data/artifacts', id, 'shot.png')).toBe(`/data/artifacts/${id}/shot.png`);
  });
});

describe('size limits', () => {
  it('answers 413 for an artifact above MAX_ARTIFACT_BYTES and keeps nothing of it', async () => {
    const s = await api.client.createSession({ type: 'big-art' });
    const { sessions } = await api.runnerClient.claim('big-art-runner', { slots: 1, types: ['big-art'] });
    const lease = sessions[0]!.leaseToken;
    const err = await api.runnerClient
      .uploadArtifact(s.id, 'big.png', lease, Buffer.alloc(5000, 1))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).httpStatus).toBe(413);
    expect((await api.client.getSession(s.id)).artifacts).toEqual([]);
    await api.runnerClient.uploadArtifact(s.id, 'small.png', lease, Buffer.alloc(4000, 1));
    expect((await api.client.getSession(s.id)).artifacts.map((a) => a.name)).toEqual(['small.png']);
  });

  it('answers 413 for a JSON body above MAX_BODY_BYTES and enqueues nothing', async () => {
    const small = await startTestApi('auth-small', { auth: true, maxBodyBytes: 2048 });
    try {
      const res = await fetch(`${small.url}/v1/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'x', input: { blob: 'a'.repeat(4000) } }),
      });
      expect(res.status).toBe(413);
      expect(await res.json()).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE' } });
      const { rows } = await small.db.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions');
      expect(rows[0]!.n).toBe(0);
    } finally {
      await small.stop();
    }
  });
});

describe('rate limits', () => {
  it('keeps the bucket table bounded, dropping idle keys first', () => {
    let now = 0;
    const buckets = new TokenBuckets({ perSec: 10, burst: 2, maxKeys: 3, now: () => now });
    for (let i = 0; i < 100; i++) buckets.take(`ip:${i}`);
    expect(buckets.size).toBeLessThanOrEqual(3);
    // An active key that has spent its burst keeps its debt while idle ones are dropped.
    buckets.take('busy');
    buckets.take('busy');
    expect(buckets.take('busy')).toBeGreaterThan(0);
    now += 1000;
    for (let i = 0; i < 5; i++) buckets.take(`late:${i}`);
    expect(buckets.size).toBeLessThanOrEqual(3);
  });

  it('limits client endpoints per token with 429 and Retry-After, never runner endpoints', async () => {
    const { db } = await freshDb('auth_rl');
    let clock = 0;
    const app = await buildApp({
      db,
      auth: { apiToken: API_TOKEN, runnerToken: RUNNER_TOKEN, protectOps: false },
      staleSessionTimeoutMs: 30_000,
      maxBodyBytes: 1 << 20,
      maxArtifactBytes: 1 << 20,
      artifactsDir: api.artifactsDir,
      // A clock that moves only when the test says so: refills are exact, not a matter of machine speed.
      rateLimit: { perSec: 1, burst: 5, now: () => clock },
      version: 'test',
    });
    try {
      const get = (token: string, url = '/v1/queue') =>
        app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) statuses.push((await get(API_TOKEN)).statusCode);
      expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
      expect(statuses.slice(5)).toEqual([429, 429, 429]);
      const limited = await get(API_TOKEN);
      expect(limited.statusCode).toBe(429);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(limited.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
      // One second later, one more request is allowed.
      clock += 1000;
      expect((await get(API_TOKEN)).statusCode).toBe(200);
      expect((await get(API_TOKEN)).statusCode).toBe(429);
      // Runners keep heartbeating however busy the clients are.
      for (let i = 0; i < 20; i++) {
        const hb = await app.inject({
          method: 'POST',
          url: '/v1/runners/rl-runner/heartbeat',
          headers: { authorization: `Bearer ${RUNNER_TOKEN}` },
          payload: { activeSessions: 0, maxConcurrency: 1, sessions: [] },
        });
        expect(hb.statusCode).toBe(200);
      }
      // Public probes are not limited either.
      expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      // A wrong token is refused as 401 before it can spend anyone's budget.
      expect((await get('wrong')).statusCode).toBe(401);
    } finally {
      await app.close();
      await db.end();
    }
  });

  it('keys anonymous callers by IP when auth is off', async () => {
    const { db } = await freshDb('auth_rl_ip');
    const app = await buildApp({
      db,
      auth: { protectOps: false },
      staleSessionTimeoutMs: 30_000,
      maxBodyBytes: 1 << 20,
      maxArtifactBytes: 1 << 20,
      artifactsDir: api.artifactsDir,
      rateLimit: { perSec: 1, burst: 2, now: () => 0 },
      version: 'test',
    });
    try {
      const from = (ip: string) => app.inject({ method: 'GET', url: '/v1/queue', remoteAddress: ip });
      expect((await from('10.0.0.1')).statusCode).toBe(200);
      expect((await from('10.0.0.1')).statusCode).toBe(200);
      expect((await from('10.0.0.1')).statusCode).toBe(429);
      expect((await from('10.0.0.2')).statusCode).toBe(200);
    } finally {
      await app.close();
      await db.end();
    }
  });
});

describe('logs', () => {
  it('never contain the tokens, lease tokens or secret session inputs', async () => {
    const chunks: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk.toString());
        cb();
      },
    });
    const log = createLogger('trace', { component: 'api' }, sink);
    const { db } = await freshDb('auth_logs');
    const app = await buildApp({
      db,
      auth: { apiToken: API_TOKEN, runnerToken: RUNNER_TOKEN, protectOps: true },
      staleSessionTimeoutMs: 30_000,
      maxBodyBytes: 1 << 20,
      maxArtifactBytes: 1 << 20,
      artifactsDir: api.artifactsDir,
      logger: log,
      version: 'test',
    });
    const SECRET = 'hunter2-very-secret-value';
    let lease = '';
    try {
      const auth = (t: string) => ({ authorization: `Bearer ${t}` });
      const created = await app.inject({
        method: 'POST',
        url: '/v1/sessions',
        headers: auth(API_TOKEN),
        payload: { type: 'logged', input: { user: 'a', secret: SECRET, secrets: { password: SECRET } } },
      });
      expect(created.statusCode).toBe(201);
      const claim = await app.inject({
        method: 'POST',
        url: '/v1/runners/log-runner/claim',
        headers: auth(RUNNER_TOKEN),
        payload: { slots: 1, types: ['logged'] },
      });
      lease = claim.json<{ sessions: { leaseToken: string }[] }>().sessions[0]!.leaseToken;
      await app.inject({ method: 'GET', url: '/v1/queue', headers: auth('wrong-token-value-xyz') });
      await app.inject({ method: 'GET', url: '/v1/runners', headers: auth(RUNNER_TOKEN) });
      // A failure that is logged with its error (the database is gone).
      await db.end();
      const failed = await app.inject({ method: 'GET', url: '/v1/queue', headers: auth(API_TOKEN) });
      expect(failed.statusCode).toBeGreaterThanOrEqual(500);
      // Objects logged by hand are redacted too.
      log.info({ apiToken: API_TOKEN, headers: { authorization: `Bearer ${API_TOKEN}` } }, 'config');
      log.info({ session: { leaseToken: lease }, input: { secret: SECRET } }, 'session');
    } finally {
      await app.close();
    }
    const text = chunks.join('');
    expect(text.length).toBeGreaterThan(0);
    expect(text).toContain('request failed');
    for (const needle of [API_TOKEN, RUNNER_TOKEN, 'wrong-token-value-xyz', SECRET, lease])
      expect(text, needle).not.toContain(needle);
    expect(text).toContain('[redacted]');
  });
});
