import type { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type {
  ArtifactStore,
  GetOptions,
  PutOptions,
  S3StoreOptions,
  StoredObject,
} from './artifact-store.js';

/** Loaded only when ARTIFACTS_URL is s3:// (see createArtifactStore): the AWS SDK costs local users nothing. */

/** Parts of a multipart upload: S3's smallest part; at most PART_QUEUE of them are held at once. */
export const PART_BYTES = 5 * 1024 * 1024;
const PART_QUEUE = 2;
/** How long a presigned download URL is good for. */
export const PRESIGN_SECONDS = 300;

export class S3ArtifactStore implements ArtifactStore {
  readonly location: string;
  private readonly client: S3Client;
  /** Multipart uploads completed and parts sent (for tests: large bodies go up in parts as they arrive). */
  multipartUploads = 0;
  partsSent = 0;

  constructor(private readonly opts: S3StoreOptions) {
    this.location = `s3://${opts.bucket}${opts.prefix ? `/${opts.prefix}` : ''}`;
    this.client = new S3Client({
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      // An endpoint of another S3-compatible store still needs a region to sign with.
      region: opts.region ?? (opts.endpoint ? 'us-east-1' : undefined),
      forcePathStyle: opts.forcePathStyle,
      // The SDK's default CRC32 checksums on every put and get are refused by several S3-compatible
      // stores (R2, older MinIO, Supabase): beyond AWS, checksums only where the operation needs them.
      ...(opts.endpoint
        ? { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }
        : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    });
  }

  /** The region the SDK signs with (S3_REGION, else AWS_REGION or the AWS config); undefined when none is set. */
  async region(): Promise<string | undefined> {
    return this.client.config.region().catch(() => undefined);
  }

  private key(key: string): string {
    return this.opts.prefix ? `${this.opts.prefix}/${key}` : key;
  }

  async put(key: string, body: Readable, opts: PutOptions): Promise<{ bytes: number }> {
    let bytes = 0;
    body.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.opts.bucket,
        Key: this.key(key),
        Body: body,
        ContentType: opts.contentType,
        ...(opts.size !== undefined && opts.size <= PART_BYTES ? { ContentLength: opts.size } : {}),
      },
      partSize: PART_BYTES,
      queueSize: PART_QUEUE,
      leavePartsOnError: false,
    });
    upload.on('httpUploadProgress', () => {
      this.partsSent++;
    });
    try {
      await upload.done();
    } catch (err) {
      // A failed body (too large, the runner went away) leaves no object: a multipart upload is aborted by
      // the SDK, and a single put that did complete is removed.
      await this.delete([key]).catch(() => undefined);
      throw err;
    }
    if (upload.uploadId) this.multipartUploads++;
    return { bytes };
  }

  async get(key: string, opts: GetOptions): Promise<StoredObject | null> {
    const redirect = this.opts.redirect && opts.stream !== true;
    const command = new GetObjectCommand({
      Bucket: this.opts.bucket,
      Key: this.key(key),
      ...(redirect
        ? {
            ResponseContentType: opts.contentType,
            ResponseContentDisposition: `inline; filename="${opts.fileName}"`,
          }
        : {}),
    });
    if (redirect)
      return {
        kind: 'redirect',
        url: await getSignedUrl(this.client, command, { expiresIn: PRESIGN_SECONDS }),
      };
    try {
      const res = await this.client.send(command);
      return { kind: 'stream', stream: res.Body as Readable, size: res.ContentLength ?? 0 };
    } catch (err) {
      if (
        err instanceof S3ServiceException &&
        (err.name === 'NoSuchKey' || err.$metadata.httpStatusCode === 404)
      )
        return null;
      throw err;
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const res = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.opts.bucket,
          Delete: { Objects: batch.map((k) => ({ Key: this.key(k) })), Quiet: true },
        }),
      );
      const failed = res.Errors?.filter((e) => e.Code !== 'NoSuchKey') ?? [];
      if (failed.length > 0)
        throw new Error(
          `${this.location}: could not delete ${failed[0]?.Key ?? '?'}: ${failed[0]?.Code ?? '?'}`,
        );
    }
  }

  async deletePrefix(sessionId: string): Promise<void> {
    const prefix = this.key(`${sessionId}/`);
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [o.Key.slice(prefix.length)] : []));
      if (keys.length > 0) await this.delete(keys.map((k) => `${sessionId}/${k}`));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
