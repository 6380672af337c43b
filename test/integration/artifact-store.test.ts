import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactKey, LocalArtifactStore, type ArtifactStore } from '../../src/server/artifact-store.js';
import { S3ArtifactStore } from '../../src/server/artifact-store-s3.js';
import { startTestS3, type TestS3 } from '../helpers/s3.js';

// The artifact store's contract, held by both stores alike: the local directory and an S3 bucket (s3rver).

let s3: TestS3;
let dir: string;
const stores: Record<string, () => ArtifactStore> = {};
const opened: ArtifactStore[] = [];

beforeAll(async () => {
  s3 = await startTestS3('sfw-contract');
  dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-store-'));
  stores.local = () => new LocalArtifactStore(dir);
  stores.s3 = () =>
    new S3ArtifactStore({
      bucket: s3.bucket,
      prefix: 'p',
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      redirect: false,
      credentials: s3.credentials,
    });
});

afterAll(async () => {
  for (const store of opened) await store.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const GET = { contentType: 'text/plain', fileName: 'a.txt' };
const text = async (store: ArtifactStore, key: string) => {
  const got = await store.get(key, GET);
  if (got?.kind !== 'stream') return got;
  return (await buffer(got.stream)).toString();
};

describe.each(['local', 's3'])('the %s artifact store', (kind) => {
  const open = () => {
    const store = stores[kind]!();
    opened.push(store);
    return store;
  };

  it('puts a stream, gets it back with its size, deletes it', async () => {
    const store = open();
    const session = randomUUID();
    const key = artifactKey(session, { name: 'a.txt', file: randomUUID() });
    const put = await store.put(key, Readable.from([Buffer.from('hello '), Buffer.from('world')]), {
      contentType: 'text/plain',
    });
    expect(put).toEqual({ bytes: 11 });
    const got = await store.get(key, GET);
    expect(got).toMatchObject({ kind: 'stream', size: 11 });
    if (got?.kind === 'stream') got.stream.destroy();
    expect(await text(store, key)).toBe('hello world');
    await store.delete([key, artifactKey(session, { name: 'never.txt', file: randomUUID() })]);
    expect(await store.get(key, GET)).toBeNull();
  });

  it('a body that fails midway leaves nothing', async () => {
    const store = open();
    const key = artifactKey(randomUUID(), { name: 'cut.bin', file: randomUUID() });
    const failing = new Readable({ read() {} });
    failing.push(Buffer.alloc(1024, 1));
    setTimeout(() => failing.destroy(new Error('the runner went away')), 50);
    await expect(store.put(key, failing, { contentType: 'application/octet-stream' })).rejects.toThrow(
      /the runner went away/,
    );
    expect(await store.get(key, GET)).toBeNull();
  });

  it('deletePrefix removes every artifact of one session and none of another', async () => {
    const store = open();
    const [gone, kept] = [randomUUID(), randomUUID()];
    const keys = [gone, gone, kept].map((s, i) => artifactKey(s, { name: `f${i}.txt`, file: randomUUID() }));
    for (const key of keys)
      await store.put(key, Readable.from([Buffer.from(key)]), { contentType: 'text/plain' });
    await store.deletePrefix(gone);
    await store.deletePrefix(randomUUID()); // none is fine
    expect(await store.get(keys[0]!, GET)).toBeNull();
    expect(await store.get(keys[1]!, GET)).toBeNull();
    expect(await text(store, keys[2]!)).toBe(keys[2]);
    if (kind === 'local') expect(await readdir(dir)).not.toContain(gone);
    else expect([...(await s3.list(`p/${gone}/`)).keys()]).toEqual([]);
  });
});

describe('artifact keys', () => {
  it('never leave their session: names and upload ids are checked', () => {
    const id = randomUUID();
    for (const name of ['../x', 'a/b', '..', '.hidden', 'a\\b', ''])
      expect(() => artifactKey(id, { name }), name).toThrow(/not a safe artifact name/);
    expect(() => artifactKey(id, { name: 'a.png', file: '../x' })).toThrow(/not a safe artifact name/);
    expect(() => artifactKey('../etc', { name: 'a.png' })).toThrow(/not a safe artifact name/);
    const upload = randomUUID();
    expect(artifactKey(id, { name: 'a.png', file: upload })).toBe(`${id}/${upload}/a.png`);
    expect(artifactKey(id, { name: 'a.png' })).toBe(`${id}/a.png`);
  });
});
