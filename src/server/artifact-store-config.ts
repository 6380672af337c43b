import path from 'node:path';
import { parseArtifactsUrl, type Config } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { LocalArtifactStore, type ArtifactStore, type S3StoreOptions } from './artifact-store.js';

export type ArtifactStoreSpec = { kind: 'local'; dir: string } | ({ kind: 's3' } & S3StoreOptions);

/** Builds the store; the AWS SDK is loaded only for s3 (local users pay nothing for it at start). */
export async function createArtifactStore(spec: ArtifactStoreSpec): Promise<ArtifactStore> {
  if (spec.kind === 'local') return new LocalArtifactStore(spec.dir);
  const { S3ArtifactStore } = await import('./artifact-store-s3.js');
  const store = new S3ArtifactStore(spec);
  if ((await store.region()) === undefined) {
    await store.close();
    throw new ConfigError(
      `ARTIFACTS_URL=${store.location} needs a region: set S3_REGION (or AWS_REGION, or a region in the AWS config)`,
    );
  }
  return store;
}

/** The store the API's settings name: ARTIFACTS_URL=s3://… with the S3_* settings, else the local directory. */
export function artifactStoreSpec(
  cfg: Config<
    | 'artifactsUrl'
    | 'artifactsDir'
    | 'dataDir'
    | 's3Endpoint'
    | 's3Region'
    | 's3ForcePathStyle'
    | 'artifactsRedirect'
    | 'awsAccessKeyId'
    | 'awsSecretAccessKey'
    | 'awsSessionToken'
  >,
): ArtifactStoreSpec {
  if (cfg.artifactsUrl === undefined) {
    for (const [name, set] of [
      ['S3_ENDPOINT', cfg.s3Endpoint !== undefined],
      ['ARTIFACTS_REDIRECT', cfg.artifactsRedirect],
    ] as const)
      if (set)
        throw new ConfigError(
          `${name} is set but ARTIFACTS_URL is not: set ARTIFACTS_URL=s3://bucket/prefix`,
        );
    return { kind: 'local', dir: path.resolve(cfg.artifactsDir ?? path.join(cfg.dataDir, 'artifacts')) };
  }
  if ((cfg.awsAccessKeyId === undefined) !== (cfg.awsSecretAccessKey === undefined))
    throw new ConfigError(
      `${cfg.awsAccessKeyId === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} is not set: set both, or neither for the AWS SDK's default credentials`,
    );
  return {
    kind: 's3',
    ...parseArtifactsUrl(cfg.artifactsUrl),
    endpoint: cfg.s3Endpoint,
    region: cfg.s3Region,
    forcePathStyle: cfg.s3ForcePathStyle,
    redirect: cfg.artifactsRedirect,
    credentials:
      cfg.awsAccessKeyId !== undefined && cfg.awsSecretAccessKey !== undefined
        ? {
            accessKeyId: cfg.awsAccessKeyId,
            secretAccessKey: cfg.awsSecretAccessKey,
            sessionToken: cfg.awsSessionToken,
          }
        : undefined,
  };
}
