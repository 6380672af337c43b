import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrowserPool } from '../../src/browser/pool.js';
import { main } from '../../src/cli/main.js';
import { loadConfig } from '../../src/core/config.js';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import type { ArtifactStore } from '../../src/server/artifact-store.js';
import { artifactStoreSpec, createArtifactStore } from '../../src/server/artifact-store-config.js';
import { S3ArtifactStore } from '../../src/server/artifact-store-s3.js';
import { API_CONFIG_KEYS, startApi } from '../../src/server/main.js';
import { SfwClient } from '../../src/sdk/client.js';
import { executeSession } from '../../src/sessions/execute.js';
import { flowSessionType } from '../../src/sessions/registry.js';
import type { Db } from '../../src/store/db.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { API_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { freshDb } from '../helpers/db.js';
import { startRunner, type InProcessRunner } from '../helpers/runner.js';
import { startTestS3, type TestS3 } from '../helpers/s3.js';
import { waitFor } from '../helpers/wait.js';

// Artifacts in an S3-compatible bucket (s3rver, a real S3-protocol server on 127.0.0.1): written by one API
// replica, served by another that shares nothing with it but Postgres and the bucket; uploads fenced by the
// lease and streamed; downloads optionally redirected to presigned URLs.

const PREFIX = 'runs';
const MB = 1024 * 1024;
let s3: TestS3;
let database: { db: Db; url: string };
let writer: TestApi;
let reader: TestApi;
let redirecting: TestApi;
let writerStore: S3ArtifactStore;
let pool: BrowserPool | undefined;
let site: FixtureServer | undefined;
let runner: InProcessRunner | undefined;

function store(redirect = false): S3ArtifactStore {
  return new S3ArtifactStore({
    bucket: s3.bucket,
    prefix: PREFIX,
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    redirect,
    credentials: s3.credentials,
  });
}

beforeAll(async () => {
  s3 = await startTestS3();
  database = await freshDb('artifacts3');
  writerStore = store();
  writer = await startTestApi('artifacts3', {
    db: database,
    maxArtifactBytes: 64 * MB,
    deps: { artifactStore: writerStore },
  });
  reader = await startTestApi('artifacts3', { db: database, deps: { artifactStore: store() } });
  redirecting = await startTestApi('artifacts3', { db: database, deps: { artifactStore: store(true) } });
});

afterAll(async () => {
  await runner?.stop();
  await pool?.close();
  await site?.close();
  for (const api of [writer, reader, redirecting]) {
    await api?.app.artifactStore.close();
    await api?.stop();
  }
  await database?.db.end();
  await s3?.stop();
});

/** The objects of a session in the bucket, by artifact name (the key's last part). */
async function objectsOf(id: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const key of (await s3.list(`${PREFIX}/${id}/`)).keys()) out.set(key.split('/').pop()!, key);
  return out;
}

/** Files any replica wrote on its own disk (none: the bucket holds everything). */
async function localFiles(): Promise<string[]> {
  const all: string[] = [];
  for (const api of [writer, reader, redirecting])
    all.push(...(await readdir(api.artifactsDir, { recursive: true }).catch(() => [])));
  return all;
}

async function claim(runnerId: string, type: string): Promise<ClaimedSession> {
  const { sessions } = await writer.runnerClient.claim(runnerId, {
    slots: 1,
    types: [type],
    maxConcurrency: 10,
  });
  expect(sessions).toHaveLength(1);
  return sessions[0]!;
}

const PNG_MAGIC = '89504e470d0a1a0a';
let flowSession: string;

describe('artifacts in S3', () => {
  it('a real runner’s screenshot and trace land in the bucket and another replica serves them', async () => {
    const executablePath = await requireChromium();
    site = await startFixtureServer();
    pool = new BrowserPool({ executablePath });
    await pool.start();
    const flow = flowSessionType();
    runner = await startRunner(writer, {
      runnerId: 's3-runner',
      types: [{ name: 'flow', browser: true }],
      executor: (session, ctx) =>
        executeSession({
          session,
          type: flow,
          pool: pool!,
          signal: ctx.signal,
          abort: (reason) => ctx.abort(reason),
          upload: (name, data, contentType) => ctx.upload(name, data, contentType),
          log: ctx.log,
        }),
    });
    const created = await writer.client.createSession({
      type: 'flow',
      input: {
        steps: [
          { action: 'goto', url: `${site.url}/pages/simple.html` },
          { action: 'screenshot', name: 'page' },
        ],
      },
      artifacts: { trace: 'always' },
    });
    const done = await writer.client.waitUntilDone(created.id, { timeoutMs: 60_000 });
    expect(done.status, done.errorMessage ?? '').toBe('succeeded');
    flowSession = done.id;

    const names = done.artifacts.map((a) => a.name);
    expect(names).toEqual(expect.arrayContaining(['page.png', 'trace.zip']));
    // Each is an object <prefix>/<session>/<upload>/<name> in the bucket.
    const objects = await objectsOf(done.id);
    for (const name of ['page.png', 'trace.zip'])
      expect(objects.get(name)).toMatch(
        new RegExp(`^${PREFIX}/${done.id}/[0-9a-f-]{36}/${name.replace('.', '\\.')}$`),
      );
    expect(await localFiles()).toEqual([]);

    const shot = await reader.client.getArtifact(done.id, 'page.png');
    expect(shot.contentType).toBe('image/png');
    expect(shot.data.subarray(0, 8).toString('hex')).toBe(PNG_MAGIC);
    expect(shot.data).toEqual(await s3.read(objects.get('page.png')!));
    const trace = await reader.client.getArtifact(done.id, 'trace.zip');
    expect(trace.data.subarray(0, 2).toString()).toBe('PK');
    expect(trace.data.length).toBe(done.artifacts.find((a) => a.name === 'trace.zip')!.size);
  });

  it('an upload whose lease moves on while it is stored leaves no object and no row', async () => {
    const s = await writer.client.createSession({ type: 's3-fence', maxAttempts: 2 });
    const a = await claim('s3-a', 's3-fence');
    const holder = await writer.db.connect();
    const probe = await writer.db.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [s.id]);
      const settled = writer.runnerClient
        .uploadArtifact(s.id, 'page.txt', a.leaseToken, Buffer.from('stale from A'))
        .then(
          () => 200,
          (err: { httpStatus?: number }) => err.httpStatus ?? 0,
        );
      // A's object is in the bucket and its upload waits on the row to record it.
      await waitFor(
        async () => {
          const { rows } = await probe.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype IN ('tuple', 'transactionid')`,
          );
          return rows[0]!.n > 0;
        },
        { timeoutMs: 5000, what: 'the upload to wait on the session row' },
      );
      expect([...(await objectsOf(s.id)).keys()]).toEqual(['page.txt']);
      await holder.query(
        `UPDATE sessions SET lease_token = gen_random_uuid(), claimed_by = 's3-b', attempt = attempt + 1 WHERE id = $1`,
        [s.id],
      );
      await holder.query('COMMIT');
      expect(await settled).toBe(409);
    } finally {
      holder.release();
      probe.release();
    }
    expect(await objectsOf(s.id)).toEqual(new Map());
    expect((await writer.client.getSession(s.id)).artifacts).toEqual([]);

    // The holder's upload stands; its second upload of the name replaces the first object.
    const { rows } = await writer.db.query<{ lease_token: string }>(
      'SELECT lease_token FROM sessions WHERE id = $1',
      [s.id],
    );
    const b = rows[0]!.lease_token;
    await writer.runnerClient.uploadArtifact(s.id, 'page.txt', b, Buffer.from('one from B'));
    await writer.runnerClient.uploadArtifact(s.id, 'page.txt', b, Buffer.from('two from B'));
    await expect(
      writer.runnerClient.uploadArtifact(s.id, 'page.txt', a.leaseToken, Buffer.from('stale from A')),
    ).rejects.toMatchObject({ httpStatus: 409 });
    const objects = await objectsOf(s.id);
    expect(objects.size).toBe(1);
    expect((await s3.read(objects.get('page.txt')!)).toString()).toBe('two from B');
    expect((await reader.client.getArtifact(s.id, 'page.txt')).data.toString()).toBe('two from B');

    // deletePrefix (retention) removes every object of the session.
    await writer.app.artifactStore.deletePrefix(s.id);
    expect(await objectsOf(s.id)).toEqual(new Map());
  });

  it('a 50 MB upload streams to the bucket in parts as it arrives, never whole in the API’s memory', async () => {
    const s = await writer.client.createSession({ type: 's3-big' });
    const c = await claim('s3-c', 's3-big');
    const total = 50 * MB;
    const chunk = Buffer.alloc(MB, 7);
    const multipartBefore = writerStore.multipartUploads;
    const partsBefore = writerStore.partsSent;
    const url = new URL(`/v1/sessions/${s.id}/artifacts/big.bin`, writer.url);
    let sent = 0;
    const req = request(url, {
      method: 'PUT',
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(total),
        'x-lease-token': c.leaseToken,
      },
    });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
    });
    const send = async (upTo: number) => {
      while (sent < upTo) {
        sent += chunk.length;
        if (!req.write(chunk)) await new Promise((resolve) => req.once('drain', resolve));
      }
    };
    // The first 20 MB: the API has sent parts of them to the bucket while the rest is still to come.
    await send(20 * MB);
    await waitFor(async () => writerStore.partsSent >= partsBefore + 2, {
      timeoutMs: 10_000,
      what: 'parts to reach the bucket before the body is complete',
    });
    expect(sent).toBe(20 * MB);
    await send(total);
    req.end();
    const { status, body } = await answer;
    expect(status, body).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ name: 'big.bin', size: total });
    const objects = await objectsOf(s.id);
    expect((await s3.list(objects.get('big.bin'))).get(objects.get('big.bin')!)).toBe(total);
    expect(writerStore.multipartUploads).toBe(multipartBefore + 1);
    expect(writerStore.partsSent).toBe(partsBefore + 10);
  });
  it('an upload past MAX_ARTIFACT_BYTES is refused with 413 and leaves no object', async () => {
    const s = await writer.client.createSession({ type: 's3-small' });
    const c = await claim('s3-d', 's3-small');
    const small = await startTestApi('artifacts3', {
      db: database,
      maxArtifactBytes: 1024,
      deps: { artifactStore: store() },
    });
    try {
      await expect(
        small.runnerClient.uploadArtifact(s.id, 'big.txt', c.leaseToken, Buffer.alloc(4096, 1)),
      ).rejects.toMatchObject({ httpStatus: 413 });
      // Sent without a length (chunked): counted as it passes, stopped past the limit.
      const chunked = await new Promise<number>((resolve, reject) => {
        const req = request(new URL(`/v1/sessions/${s.id}/artifacts/big.txt`, small.url), {
          method: 'PUT',
          headers: { 'content-type': 'text/plain', 'x-lease-token': c.leaseToken },
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        for (let i = 0; i < 8; i++) req.write(Buffer.alloc(512, 2));
        req.end();
      });
      expect(chunked).toBe(413);
      expect(await objectsOf(s.id)).toEqual(new Map());
      expect((await writer.client.getSession(s.id)).artifacts).toEqual([]);
    } finally {
      await small.app.artifactStore.close();
      await small.stop();
    }
  });

  it('with ARTIFACTS_REDIRECT a download answers 302 to a presigned URL that the SDK and sfw follow', async () => {
    const direct = await fetch(`${redirecting.url}/v1/sessions/${flowSession}/artifacts/page.png`, {
      redirect: 'manual',
    });
    expect(direct.status).toBe(302);
    const location = direct.headers.get('location') ?? '';
    expect(location.startsWith(`${s3.endpoint}/${s3.bucket}/${PREFIX}/${flowSession}/`)).toBe(true);
    expect(location).toContain('X-Amz-Signature=');
    const expected = (await reader.client.getArtifact(flowSession, 'page.png')).data;
    // redirect=false (the dashboard's, whose CSP reaches only the API) streams through the API instead.
    const proxied = await fetch(
      `${redirecting.url}/v1/sessions/${flowSession}/artifacts/page.png?redirect=false`,
      { redirect: 'manual' },
    );
    expect(proxied.status).toBe(200);
    expect(Buffer.from(await proxied.arrayBuffer())).toEqual(expected);
    const viaSdk = await redirecting.client.getArtifact(flowSession, 'page.png');
    expect(viaSdk.data).toEqual(expected);
    expect(viaSdk.contentType).toBe('image/png');

    const dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-s3-cli-'));
    try {
      const out = path.join(dir, 'page.png');
      const env = { API_BASE_URL: redirecting.url };
      expect(await main(['artifacts', 'get', flowSession, 'page.png', '-o', out], env)).toBe(0);
      expect(await readFile(out)).toEqual(expected);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the SDK follows a redirect to another host without sending the API token there', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const elsewhere = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { 'content-type': 'image/png' }).end('bytes from elsewhere');
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    const target = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}/signed?X-Amz-Signature=x`;
    const redirectOnly: ArtifactStore = {
      location: 'test',
      put: () => Promise.reject(new Error('not here')),
      get: () => Promise.resolve({ kind: 'redirect', url: target }),
      delete: () => Promise.resolve(),
      deletePrefix: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };
    const api = await startTestApi('artifacts3', {
      db: database,
      auth: true,
      deps: { artifactStore: redirectOnly },
    });
    try {
      const got = await api.client.getArtifact(flowSession, 'page.png');
      expect(got.data.toString()).toBe('bytes from elsewhere');
      expect(seen).toHaveLength(1);
      expect(seen[0]!.authorization).toBeUndefined();
      expect(JSON.stringify(seen[0])).not.toContain(API_TOKEN);
    } finally {
      await api.stop();
      await new Promise((resolve) => elsewhere.close(resolve));
    }
  });

  it('an API started from ARTIFACTS_URL and the S3 variables stores in and serves from the bucket', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-s3-env-'));
    const cfg = loadConfig(API_CONFIG_KEYS, {
      env: {
        DATABASE_URL: database.url,
        PORT: '0',
        DATA_DIR: dataDir,
        LOG_LEVEL: 'silent',
        ARTIFACTS_URL: `s3://${s3.bucket}/${PREFIX}`,
        S3_ENDPOINT: s3.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      },
    });
    const api = await startApi(cfg);
    const client = new SfwClient({ baseUrl: api.url, retries: 0 });
    try {
      // What the test replicas wrote, and a new upload of its own, in the bucket and nowhere on its disk.
      const shot = await client.getArtifact(flowSession, 'page.png');
      expect(shot.data).toEqual((await reader.client.getArtifact(flowSession, 'page.png')).data);
      const s = await client.createSession({ type: 's3-env' });
      const { sessions } = await client.claim('s3-env', { slots: 1, types: ['s3-env'], maxConcurrency: 1 });
      await client.uploadArtifact(s.id, 'note.txt', sessions[0]!.leaseToken, Buffer.from('via env'));
      const objects = await objectsOf(s.id);
      expect((await s3.read(objects.get('note.txt')!)).toString()).toBe('via env');
      expect((await reader.client.getArtifact(s.id, 'note.txt')).data.toString()).toBe('via env');
      expect(await readdir(path.join(dataDir, 'artifacts')).catch(() => [])).toEqual([]);
    } finally {
      await client.close();
      await api.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('a bad ARTIFACTS_URL or S3 setting is an error naming the variable', async () => {
    for (const bad of ['https://bucket/x', 's3://', 's3://Bad_Bucket/x', 's3://ab', 's3://bucket/../x']) {
      expect(() => loadConfig(API_CONFIG_KEYS, { env: { ARTIFACTS_URL: bad } }), bad).toThrow(
        /^ARTIFACTS_URL must be s3:\/\/bucket or s3:\/\/bucket\/prefix/,
      );
    }
    expect(() => loadConfig(API_CONFIG_KEYS, { flags: { 'artifacts-url': 'gs://b' } })).toThrow(
      /^--artifacts-url/,
    );
    const spec = artifactStoreSpec(
      loadConfig(API_CONFIG_KEYS, {
        env: { ARTIFACTS_URL: 's3://my-bucket/a/b/', S3_FORCE_PATH_STYLE: 'true' },
      }),
    );
    expect(spec).toMatchObject({ kind: 's3', bucket: 'my-bucket', prefix: 'a/b', forcePathStyle: true });
    expect(() =>
      artifactStoreSpec(loadConfig(API_CONFIG_KEYS, { env: { S3_ENDPOINT: 'http://127.0.0.1:9000' } })),
    ).toThrow(/S3_ENDPOINT is set but ARTIFACTS_URL is not/);
    expect(() =>
      artifactStoreSpec(
        loadConfig(API_CONFIG_KEYS, { env: { ARTIFACTS_URL: 's3://my-bucket', AWS_ACCESS_KEY_ID: 'AKIA' } }),
      ),
    ).toThrow(/AWS_SECRET_ACCESS_KEY is not set/);
    expect(artifactStoreSpec(loadConfig(API_CONFIG_KEYS, { env: {} }))).toMatchObject({ kind: 'local' });
    // AWS S3 without any region: refused at start rather than at the first upload.
    const saved = { AWS_REGION: process.env.AWS_REGION, AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    try {
      const noRegion = artifactStoreSpec(
        loadConfig(API_CONFIG_KEYS, { env: { ARTIFACTS_URL: 's3://my-bucket' } }),
      );
      await expect(createArtifactStore(noRegion)).rejects.toThrow(/needs a region: set S3_REGION/);
      const withRegion = await createArtifactStore(
        artifactStoreSpec(
          loadConfig(API_CONFIG_KEYS, { env: { ARTIFACTS_URL: 's3://my-bucket', S3_REGION: 'eu-west-1' } }),
        ),
      );
      expect(withRegion.location).toBe('s3://my-bucket');
      await withRegion.close();
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    }
  });
});
