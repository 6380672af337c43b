import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, NetworkError, SfwClient } from '@session-framework/sdk';
import { SfwError } from '../../src/core/errors.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

/** The client's transport (Node's http) against a local HTTP server that answers as each test says. */

type Handler = (req: IncomingMessage & { body: Buffer }, res: ServerResponse) => void;

let server: Server | undefined;

async function serve(handler: Handler): Promise<string> {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(Object.assign(req, { body: Buffer.concat(chunks) }), res));
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const SESSION = { id: 's1', status: 'succeeded' };

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

describe('SfwClient transport', () => {
  it('sends JSON with its token and user agent, and nothing that looks like a browser page', async () => {
    const seen: IncomingMessage['headers'][] = [];
    const url = await serve((req, res) => {
      seen.push(req.headers);
      expect(JSON.parse(req.body.toString())).toEqual({ type: 'flow', input: { steps: [] } });
      json(res, 201, SESSION);
    });
    const client = new SfwClient({ baseUrl: `${url}/`, token: 'secret-token', userAgent: 'sdk-test' });
    await expect(client.createSession({ type: 'flow', input: { steps: [] } })).resolves.toEqual(SESSION);
    expect(seen[0]).toMatchObject({
      authorization: 'Bearer secret-token',
      'user-agent': 'sdk-test',
      'content-type': 'application/json',
    });
    // The API refuses state-changing requests that carry another site's Origin or Sec-Fetch-Site.
    expect(seen[0]?.origin).toBeUndefined();
    expect(seen[0]?.['sec-fetch-site']).toBeUndefined();
  });

  it('uploads bytes as they are and reads an artifact back as a Buffer', async () => {
    const url = await serve((req, res) => {
      if (req.method === 'PUT') {
        expect(req.headers['content-type']).toBe('image/png');
        expect(req.headers['x-lease-token']).toBe('lease-1');
        return json(res, 200, { name: 'a.png', size: req.body.length, contentType: 'image/png' });
      }
      res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.from([0, 1, 2, 255]));
    });
    const client = new SfwClient({ baseUrl: url });
    const up = await client.uploadArtifact(
      's1',
      'a.png',
      'lease-1',
      Buffer.from([0, 1, 2, 255]),
      'image/png',
    );
    expect(up.size).toBe(4);
    const { contentType, data } = await client.getArtifact('s1', 'a.png');
    expect(contentType).toBe('image/png');
    expect(Buffer.isBuffer(data) && [...data]).toEqual([0, 1, 2, 255]);
  });

  it('an error answer is an ApiError of the one registry: status, code, path, and an SfwError of core', async () => {
    const url = await serve((_req, res) =>
      json(res, 409, { error: { code: 'LEASE_LOST', message: 'lease lost', path: 'body.leaseToken' } }),
    );
    const err = await new SfwClient({ baseUrl: url })
      .complete('s1', { leaseToken: 'l', status: 'succeeded' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toBeInstanceOf(SfwError);
    expect(err).toMatchObject({ httpStatus: 409, status: 409, code: 'LEASE_LOST', path: 'body.leaseToken' });
    expect((err as ApiError).retryable).toBe(false);
  });

  it('retries an idempotent call after 503, and a claim not at all', async () => {
    let calls = 0;
    const url = await serve((_req, res) => {
      calls++;
      if (calls === 1) return json(res, 503, { error: { code: 'UNAVAILABLE', message: 'db down' } });
      json(res, 200, { sessions: [] });
    });
    const client = new SfwClient({ baseUrl: url, backoffMs: 1 });
    await expect(client.getSession('s1')).resolves.toEqual({ sessions: [] });
    expect(calls).toBe(2);

    calls = 0;
    const err = await client.claim('r1', { slots: 1, types: ['flow'] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ httpStatus: 503, code: 'UNAVAILABLE' });
    expect(calls).toBe(1);
  });

  it('an API that is not listening is a NetworkError that says the request was not sent', async () => {
    const port = await freePort();
    const client = new SfwClient({ baseUrl: `http://127.0.0.1:${port}`, retries: 1, backoffMs: 1 });
    const err = await client.claim('r1', { slots: 1, types: ['flow'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetworkError);
    expect(err).toMatchObject({ sent: false, code: 'UNAVAILABLE' });
    expect((err as Error).message).toMatch(/^cannot reach the API: ECONNREFUSED/);
  });

  it('holds each request to its deadline, long-polls to the deadline plus their wait', async () => {
    const url = await serve((req, res) => {
      if (req.url?.startsWith('/v1/sessions/s1/wait')) setTimeout(() => json(res, 200, SESSION), 300);
      // Other requests are never answered.
    });
    const client = new SfwClient({ baseUrl: url, timeoutMs: 150, retries: 0 });
    const t0 = Date.now();
    const err = await client.getSession('s1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetworkError);
    expect(err).toMatchObject({ sent: true, message: 'no answer from the API within 150 ms' });
    expect(Date.now() - t0).toBeLessThan(2000);
    await expect(client.waitSession('s1', 400)).resolves.toEqual(SESSION);
  });

  it('an aborted call ends at once and is not retried, idempotent or not', async () => {
    let calls = 0;
    const url = await serve(() => calls++);
    const client = new SfwClient({ baseUrl: url, backoffMs: 1 });
    for (const call of [
      (signal: AbortSignal) => client.claim('r1', { slots: 1, types: ['flow'], waitMs: 30_000 }, signal),
      (signal: AbortSignal) => client.waitSession('s1', 30_000, signal),
    ]) {
      calls = 0;
      const ac = new AbortController();
      const pending = call(ac.signal);
      await waitFor(() => calls === 1, { intervalMs: 5, what: 'the request to arrive' });
      ac.abort();
      await expect(pending).rejects.toMatchObject({
        name: 'NetworkError',
        message: 'request aborted',
        sent: true,
      });
      expect(calls).toBe(1);
    }
  });

  it('keeps at most `connections` requests in flight; close() waits for them, then refuses', async () => {
    let inFlight = 0;
    let most = 0;
    const url = await serve((_req, res) => {
      most = Math.max(most, ++inFlight);
      setTimeout(() => {
        inFlight--;
        json(res, 200, SESSION);
      }, 50);
    });
    const client = new SfwClient({ baseUrl: url, connections: 2 });
    const all = Promise.all(Array.from({ length: 6 }, () => client.getSession('s1')));
    await waitFor(() => inFlight > 0, { intervalMs: 5, what: 'the first request' });
    const closed = client.close();
    expect(await all).toHaveLength(6);
    await closed;
    expect(most).toBe(2);
    await expect(client.health()).rejects.toMatchObject({ name: 'NetworkError', sent: false });
  });
});
