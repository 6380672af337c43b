import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SfwError } from '../core/errors.js';

/**
 * Where artifact bytes live, behind one interface: a local directory (the default) or an S3-compatible
 * bucket. Keys are `<session id>/<upload id>/<name>`: each upload writes a key of its own, which the
 * database references only once the upload's lease was checked in the statement that records it.
 */
export interface ArtifactStore {
  /** For logs and errors: the directory or the s3:// URL. */
  readonly location: string;
  /** Streams `body` to `key` (never whole in memory); rejects (and leaves nothing) if the body fails. */
  put(key: string, body: Readable, opts: PutOptions): Promise<{ bytes: number }>;
  /** The object's bytes, or where to send the client for them; null when the object is missing. */
  get(key: string, opts: GetOptions): Promise<StoredObject | null>;
  /** Removes objects; missing ones are fine. */
  delete(keys: readonly string[]): Promise<void>;
  /** Removes every object of a session (retention, deleted sessions); none is fine. */
  deletePrefix(sessionId: string): Promise<void>;
  close(): Promise<void>;
}

export interface PutOptions {
  /** The body's length when known (Content-Length): lets a store skip multipart for small bodies. */
  size?: number | undefined;
  contentType: string;
}

export interface GetOptions {
  /** What a redirect's presigned URL answers with (the stream's headers are set by the route). */
  contentType: string;
  fileName: string;
  /** Answer with the bytes even where the store would redirect (the dashboard, whose CSP allows 'self' only). */
  stream?: boolean | undefined;
}

export type StoredObject =
  { kind: 'stream'; stream: Readable; size: number } | { kind: 'redirect'; url: string };

const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SAFE_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * The key of a recorded artifact: `<session>/<upload>/<name>`, or `<session>/<name>` for a file of the
 * earlier flat layout (no upload id). Every part is checked, so a key never leaves its session's prefix.
 */
export function artifactKey(
  sessionId: string,
  artifact: { name: string; file?: string | undefined },
): string {
  const parts = [sessionId, ...(artifact.file === undefined ? [] : [artifact.file]), artifact.name];
  const bad =
    !UPLOAD_ID.test(sessionId) ||
    (artifact.file !== undefined && !UPLOAD_ID.test(artifact.file)) ||
    !SAFE_SEGMENT.test(artifact.name) ||
    artifact.name.includes('..');
  if (bad)
    throw new SfwError('VALIDATION', 'params.name: is not a safe artifact name', { path: 'params.name' });
  return parts.join('/');
}

/** Artifacts under a local directory: <dir>/<session>/<upload>/<name> (the layout before stores existed). */
export class LocalArtifactStore implements ArtifactStore {
  readonly location: string;

  constructor(private readonly dir: string) {
    this.location = path.resolve(dir);
  }

  private file(key: string): string {
    const file = path.resolve(this.location, ...key.split('/'));
    if (!file.startsWith(this.location + path.sep))
      throw new Error(`artifact key ${key} leaves ${this.location}`);
    return file;
  }

  async put(key: string, body: Readable, _opts: PutOptions): Promise<{ bytes: number }> {
    const file = this.file(key);
    await mkdir(path.dirname(file), { recursive: true });
    let bytes = 0;
    body.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    try {
      await pipeline(body, createWriteStream(file));
    } catch (err) {
      await this.delete([key]);
      throw err;
    }
    return { bytes };
  }

  async get(key: string): Promise<StoredObject | null> {
    const file = this.file(key);
    const st = await stat(file).catch(() => null);
    if (!st?.isFile()) return null;
    return { kind: 'stream', stream: createReadStream(file), size: st.size };
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      const file = this.file(key);
      await rm(file, { force: true });
      // An upload's own folder goes with its file (never the session's folder itself).
      if (key.split('/').length > 2) await rmdir(path.dirname(file)).catch(() => undefined);
    }
  }

  async deletePrefix(sessionId: string): Promise<void> {
    if (!UPLOAD_ID.test(sessionId)) throw new Error(`not a session id: ${sessionId}`);
    await rm(this.file(sessionId), { recursive: true, force: true });
  }

  async close(): Promise<void> {}
}

/** Where ARTIFACTS_URL=s3://bucket/prefix points, with the S3_* settings. */
export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slashes ('' for none). */
  prefix: string;
  endpoint?: string | undefined;
  region?: string | undefined;
  forcePathStyle: boolean;
  /** Downloads answer 302 to a presigned URL instead of streaming through the API. */
  redirect: boolean;
  /** Explicit credentials; absent: the AWS SDK's default chain (env, profile, web identity, instance role). */
  credentials?:
    { accessKeyId: string; secretAccessKey: string; sessionToken?: string | undefined } | undefined;
}
