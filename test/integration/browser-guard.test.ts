import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { hostPolicy } from '../../src/server/auth.js';
import { SECURITY_HEADERS, toErrorBody } from '../../src/server/app.js';
import { SfwClient } from '@session-framework/sdk';
import { API_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';

/**
 * The loopback quick start has no tokens: any web page the user opens can send requests to it through
 * the browser. These requests are what such a page can make a browser send; each must be refused and
 * change nothing, while the SDK, the CLI's client and runners (no Origin, no Sec-Fetch-*) keep working.
 */

let api: TestApi;
let port = 0;

beforeAll(async () => {
  api = await startTestApi('browser_guard');
  port = Number(new URL(api.url).port);
});
afterAll(async () => {
  await api.stop();
});

async function send(
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH',
  path: string,
  opts: { headers?: Record<string, string>; body?: string; url?: string } = {},
) {
  const res = await request(`${opts.url ?? api.url}${path}`, {
    method,
    headers: opts.headers ?? {},
    ...(opts.body === undefined ? {} : { body: opts.body }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as unknown };
}

async function queued(): Promise<string> {
  return (await api.client.createSession({ type: 'guarded', input: { n: 1 } })).id;
}

async function countSessions(): Promise<number> {
  const { rows } = await api.db.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions');
  return rows[0]!.n;
}

function expectErrorShape(res: { text: string }, code: string) {
  const body = JSON.parse(res.text) as { error: { code: unknown; message: unknown } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
}

describe('DNS rebinding: the Host header', () => {
  it('refuses a foreign Host with 421 in the error shape, whatever the path, and changes nothing', async () => {
    const id = await queued();
    const before = await countSessions();
    for (const host of [
      `evil.example:${port}`,
      'evil.example',
      `127.0.0.1.evil.example:${port}`,
      `localhost.evil.example`,
    ]) {
      for (const [method, path, body] of [
        ['GET', '/v1/queue', undefined],
        ['GET', `/v1/sessions/${id}`, undefined],
        ['GET', '/', undefined],
        ['POST', `/v1/sessions/${id}/cancel`, undefined],
        ['POST', '/v1/sessions', JSON.stringify({ type: 'rebound' })],
      ] as const) {
        const res = await send(method, path, {
          headers: { host, ...(body ? { 'content-type': 'application/json' } : {}) },
          ...(body ? { body } : {}),
        });
        expect(res.status, `${host} ${method} ${path}`).toBe(421);
        expectErrorShape(res, 'HOST_NOT_ALLOWED');
        expect(res.text).toContain('ALLOWED_HOSTS');
        expect(res.headers['x-frame-options']).toBe('DENY');
      }
    }
    expect((await api.client.getSession(id)).status).toBe('queued');
    expect(await countSessions()).toBe(before);
  });

  it('answers every loopback name: 127.0.0.0/8, localhost, *.localhost and [::1]', async () => {
    for (const host of [
      `127.0.0.1:${port}`,
      '127.0.0.1',
      `127.9.9.9:${port}`,
      `localhost:${port}`,
      'LOCALHOST.',
      `dash.localhost:${port}`,
      `[::1]:${port}`,
    ]) {
      const res = await send('GET', '/v1/queue', { headers: { host } });
      expect(res.status, host).toBe(200);
    }
  });

  it('answers the names of ALLOWED_HOSTS besides loopback, and any Host behind tokens unless it is set', async () => {
    const listed = await startTestApi('browser_guard_hosts', {
      deps: { hostPolicy: hostPolicy('sfw.test, *.corp.example, 10.0.0.7', false) },
    });
    const tokens = await startTestApi('browser_guard_tokens', { auth: true });
    const tokensListed = await startTestApi('browser_guard_tokens_listed', {
      auth: true,
      deps: { hostPolicy: hostPolicy('api.example.com', true) },
    });
    try {
      const status = async (t: TestApi, host: string, token?: string) =>
        (
          await send('GET', '/v1/queue', {
            url: t.url,
            headers: { host, ...(token ? { authorization: `Bearer ${token}` } : {}) },
          })
        ).status;
      expect(await status(listed, 'sfw.test:3000')).toBe(200);
      expect(await status(listed, 'a.b.corp.example')).toBe(200);
      expect(await status(listed, 'corp.example')).toBe(421);
      expect(await status(listed, '10.0.0.7:8080')).toBe(200);
      expect(await status(listed, 'localhost')).toBe(200);
      expect(await status(listed, 'evil.example')).toBe(421);
      // With tokens and no list, the token is the guard: a proxy's or a pod's name is answered.
      expect(await status(tokens, 'api.internal:3000', API_TOKEN)).toBe(200);
      expect(await status(tokensListed, 'api.example.com', API_TOKEN)).toBe(200);
      expect(await status(tokensListed, 'other.example.com', API_TOKEN)).toBe(421);
    } finally {
      await listed.stop();
      await tokens.stop();
      await tokensListed.stop();
    }
  });

  it('reads ALLOWED_HOSTS strictly, naming the variable and the bad entry', () => {
    for (const bad of [
      'api.example.com:443',
      'http://x.test',
      'a/b',
      '*.10.0.0.1',
      'ex ample.com',
      '*'.repeat(2),
    ])
      expect(() => hostPolicy(bad, false), bad).toThrow(ConfigError);
    expect(() => hostPolicy('ok.test, api.example.com:8443', false)).toThrow(
      /ALLOWED_HOSTS entry "api.example.com:8443"/,
    );
    expect(hostPolicy('*', false)).toEqual({ any: true });
    expect(hostPolicy('fd00::1, [fd00::2]', false)).toMatchObject({ any: false });
  });
});

describe('cross-site requests (CSRF)', () => {
  it('refuses what another site can send without a preflight, and nothing changes', async () => {
    const id = await queued();
    const before = await countSessions();
    const attempts: [string, Parameters<typeof send>[2] & { path: string }][] = [
      // A body-less POST from fetch(url, {method: 'POST', mode: 'no-cors'}) on another site.
      [
        'Sec-Fetch-Site cross-site',
        { path: `/v1/sessions/${id}/cancel`, headers: { 'sec-fetch-site': 'cross-site' } },
      ],
      [
        'Sec-Fetch-Site same-site',
        { path: `/v1/sessions/${id}/cancel`, headers: { 'sec-fetch-site': 'same-site' } },
      ],
      // A browser without Sec-Fetch-* still sends Origin on a cross-origin POST.
      ['foreign Origin', { path: `/v1/sessions/${id}/cancel`, headers: { origin: 'http://evil.example' } }],
      [
        'Origin on another port',
        { path: `/v1/sessions/${id}/cancel`, headers: { origin: `http://127.0.0.1:${port + 1}` } },
      ],
      ['Origin null', { path: `/v1/sessions/${id}/cancel`, headers: { origin: 'null' } }],
      // <form enctype="text/plain"> that spells JSON, and a urlencoded form: no Origin, no Sec-Fetch-*.
      [
        'text/plain form',
        {
          path: '/v1/sessions',
          headers: { 'content-type': 'text/plain' },
          body: '{"type":"csrf","input":{"x":"=1"}}',
        },
      ],
      [
        'urlencoded form',
        {
          path: `/v1/sessions/${id}/cancel`,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'a=1',
        },
      ],
      [
        'multipart form',
        {
          path: `/v1/sessions/${id}/cancel`,
          headers: { 'content-type': 'multipart/form-data; boundary=x' },
          body: '--x--\r\n',
        },
      ],
      [
        'text/plain, empty',
        { path: `/v1/sessions/${id}/cancel`, headers: { 'content-type': 'text/plain' }, body: '' },
      ],
      [
        'text/plain scheduler change',
        {
          path: '/v1/config/scheduler',
          headers: { 'content-type': 'text/plain' },
          body: '{"maxConcurrency":99}',
        },
      ],
    ];
    for (const [what, a] of attempts) {
      const method = a.path === '/v1/config/scheduler' ? 'PUT' : 'POST';
      const res = await send(method, a.path, a);
      const want = what.includes('form') || what.startsWith('text/plain') ? 415 : 403;
      expect(res.status, what).toBe(want);
      expectErrorShape(res, want === 403 ? 'CROSS_SITE' : 'UNSUPPORTED_MEDIA_TYPE');
    }
    expect((await api.client.getSession(id)).status).toBe('queued');
    expect(await countSessions()).toBe(before);
    expect((await api.client.getSchedulerConfig()).maxConcurrency).not.toBe(99);
  });

  it("lets the dashboard's own requests, the SDK and plain HTTP clients through", async () => {
    // The dashboard: same-origin fetches, with or without Sec-Fetch-Site.
    const a = await queued();
    const sameOrigin = await send('POST', `/v1/sessions/${a}/cancel`, {
      headers: { 'sec-fetch-site': 'same-origin', origin: api.url },
    });
    expect(sameOrigin.status).toBe(200);
    const b = await queued();
    expect((await send('POST', `/v1/sessions/${b}/cancel`, { headers: { origin: api.url } })).status).toBe(
      200,
    );
    // A proxy that rewrites Host: the browser's Sec-Fetch-Site still says same-origin.
    const c = await queued();
    const proxied = await send('POST', `/v1/sessions/${c}/cancel`, {
      headers: { 'sec-fetch-site': 'same-origin', origin: 'https://sfw.example.com' },
    });
    expect(proxied.status).toBe(200);
    // The SDK: a body-less POST (cancel), JSON bodies, a raw artifact upload.
    const client = new SfwClient({ baseUrl: api.url, retries: 0 });
    try {
      const d = await queued();
      expect((await client.cancelSession(d)).status).toBe('cancelled');
      await client.createSession({ type: 'sdk-guard' });
      const { sessions } = await client.claim('guard-runner', { slots: 1, types: ['sdk-guard'] });
      const held = sessions[0]!;
      await client.uploadArtifact(held.id, 'notes.txt', held.leaseToken, Buffer.from('hi'), 'text/plain');
      await client.uploadArtifact(
        held.id,
        'data.json',
        held.leaseToken,
        Buffer.from('{"a":1}'),
        'application/json',
      );
      await client.complete(held.id, { leaseToken: held.leaseToken, status: 'succeeded' });
      await client.stopRunner('guard-runner');
      const done = await client.getSession(held.id);
      expect(done.artifacts.map((x) => x.name).sort()).toEqual(['data.json', 'notes.txt']);
      expect((await client.getArtifact(held.id, 'data.json')).data.toString()).toBe('{"a":1}');
    } finally {
      await client.close();
    }
    // curl -X POST with no body.
    const e = await queued();
    expect((await send('POST', `/v1/sessions/${e}/cancel`)).status).toBe(200);
  });
});

describe('response headers', () => {
  it('sends the security headers on every answer, errors included; the dashboard gets its own CSP', async () => {
    const answers = [
      await send('GET', '/healthz'),
      await send('GET', '/v1/queue'),
      await send('GET', '/nope'),
      await send('GET', `/v1/sessions/${'x'.repeat(700)}`),
      await send('GET', '/v1/sessions/%E0%A4%A'),
      await send('GET', '/v1/queue', { headers: { host: 'evil.example' } }),
      await send('DELETE', '/v1/sessions'),
      await send('POST', '/v1/sessions', { headers: { 'content-type': 'application/json' }, body: '{' }),
    ];
    for (const res of answers) {
      for (const [k, v] of Object.entries(SECURITY_HEADERS))
        expect(res.headers[k], `${res.status} ${k}`).toBe(v);
    }
    expect(answers.map((r) => r.status)).toEqual([200, 200, 404, 414, 400, 421, 405, 400]);
    for (const page of ['/', '/ui/app.js']) {
      const res = await send('GET', page);
      expect(res.status).toBe(200);
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(res.headers['x-frame-options']).toBe('DENY');
    }
  });
});

describe("Fastify's own errors in the documented shape", () => {
  it('answers 414, 400, 404 and 405 as {error: {code, message}}', async () => {
    const long = await send('POST', `/v1/runners/${'r'.repeat(601)}/heartbeat`, {
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(long.status).toBe(414);
    expectErrorShape(long, 'URI_TOO_LONG');
    const badUrl = await send('GET', '/v1/sessions/%E0%A4%A');
    expect(badUrl.status).toBe(400);
    expectErrorShape(badUrl, 'BAD_REQUEST');
    const missing = await send('GET', '/v2/nothing');
    expect(missing.status).toBe(404);
    expectErrorShape(missing, 'NOT_FOUND');
    const method = await send('DELETE', '/v1/sessions');
    expect(method.status).toBe(405);
    expectErrorShape(method, 'METHOD_NOT_ALLOWED');
    expect(String(method.headers.allow)).toMatch(/GET.*POST/);
    const patch = await send('PATCH', `/v1/sessions/${await queued()}/cancel`);
    expect(patch.status).toBe(405);
    expect(patch.headers.allow).toBe('POST');
  });

  it('answers what Node cannot parse (a broken header) in the same shape', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n');
      });
      let out = '';
      socket.on('data', (d: Buffer) => (out += d.toString()));
      socket.on('close', () => resolve(out));
      socket.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1.1 400 Bad Request/);
    expect(raw).toContain('x-content-type-options: nosniff');
    const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
    expect(JSON.parse(body)).toEqual({ error: { code: 'BAD_REQUEST', message: 'malformed HTTP request' } });
  });

  it('takes runner ids up to the schema length however they are encoded (a runner no longer sees 414)', async () => {
    const client = new SfwClient({ baseUrl: api.url, retries: 0 });
    try {
      // 200 characters, the schema's limit; ':' and '@' are percent-encoded to three each.
      const id = `node-${':@'.repeat(97)}x`;
      expect(id.length).toBe(200);
      await expect(
        client.heartbeat(id, { activeSessions: 0, maxConcurrency: 1, sessions: [] }),
      ).resolves.toMatchObject({
        cancel: [],
      });
      await expect(client.claim(id, { slots: 1, types: ['nothing-here'], waitMs: 0 })).resolves.toEqual({
        sessions: [],
      });
      // One more is the schema's 400, naming the parameter.
      const err = await client
        .heartbeat(`${id}y`, { activeSessions: 0, maxConcurrency: 1, sessions: [] })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ httpStatus: 400, path: 'params.runnerId' });
    } finally {
      await client.close();
    }
  });
});

describe('values Postgres would refuse', () => {
  it('refuses timestamps Postgres cannot store in the schema, naming the field, without Postgres wording', async () => {
    const before = await countSessions();
    for (const runAt of [
      '0000-01-01T00:00:00Z',
      '2026-01-01T00:00:00+16:00',
      '2026-02-30T00:00:00Z',
      '2026-01-01T24:00:00Z',
    ]) {
      const res = await send('POST', '/v1/sessions', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'dated', runAt }),
      });
      expect(res.status, runAt).toBe(400);
      const body = res.json() as { error: { path: string; message: string } };
      expect(body.error.path, runAt).toBe('body.runAt');
      expect(body.error.message, runAt).toMatch(/^body\.runAt: must be a date-time such as/);
    }
    const hb = await send('POST', '/v1/runners/dated-runner/heartbeat', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        activeSessions: 0,
        maxConcurrency: 1,
        sessions: [],
        startedAt: '0000-06-01T00:00:00Z',
      }),
    });
    expect(hb.status).toBe(400);
    expect((hb.json() as { error: { path: string } }).error.path).toBe('body.startedAt');
    expect(await countSessions()).toBe(before);
    // The edges Postgres takes are taken.
    for (const runAt of [
      '0001-01-01T00:00:00Z',
      '9999-12-31T23:59:59.999999-15:59',
      '2028-02-29T00:00:00+15:00',
    ]) {
      const res = await send('POST', '/v1/sessions', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'dated', runAt }),
      });
      expect(res.status, runAt).toBe(201);
    }
  });

  it("keeps the database's wording out of a refusal that reaches it", () => {
    const pgError = Object.assign(new Error('date/time field value out of range: "0000-01-01"'), {
      code: '22008',
    });
    const { status, body } = toErrorBody(pgError);
    expect(status).toBe(400);
    expect(body.error.code).toBe('VALIDATION');
    expect(body.error.message).not.toMatch(/date\/time field|out of range: "|invalid input syntax/);
  });
});
