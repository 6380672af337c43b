import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { fileURLToPath } from 'node:url';

/**
 * A real S3-protocol server for tests: s3rver (an npm S3-compatible server) on 127.0.0.1 with a temp dir,
 * in a process of its own (so the API's memory is measured without it), and a client of its own to look
 * at the bucket the API writes.
 */
export interface TestS3 {
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  client: S3Client;
  /** Every key in the bucket under `prefix`, with its size. */
  list(prefix?: string): Promise<Map<string, number>>;
  read(key: string): Promise<Buffer>;
  stop(): Promise<void>;
}

// s3rver accepts any signature made with its one built-in key pair.
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

const SERVER = `
import S3rver from 's3rver';
const server = new S3rver({ port: 0, address: '127.0.0.1', directory: process.argv[1], silent: true });
const { port } = await server.run();
console.log('listening ' + port);
process.on('SIGTERM', () => process.exit(0));
`;

export async function startTestS3(bucket = 'sfw-artifacts'): Promise<TestS3> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'sfw-s3-'));
  const child = spawn(process.execPath, ['--input-type=module', '-e', SERVER, directory], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`s3rver exited (${code}) before it listened`)));
    child.stdout.on('data', () => {
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: CREDENTIALS,
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    endpoint,
    bucket,
    credentials: CREDENTIALS,
    client,
    list: async (prefix = '') => {
      const out = new Map<string, number>();
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of page.Contents ?? []) if (o.Key) out.set(o.Key, o.Size ?? 0);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return out;
    },
    read: async (key) => {
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    },
    stop: async () => {
      client.destroy();
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}
