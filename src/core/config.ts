import { BlockList, isIP } from 'node:net';
import { ConfigError } from './errors.js';
import {
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_CONCURRENCY,
  DEFAULT_POLL_INTERVAL_MS,
} from './types.js';

/**
 * The one config schema. Each field binds an environment variable and a flag; precedence is
 * flag > env > default. Commands pick the fields they use; values are validated once at start and frozen.
 */
type Kind = 'string' | 'int' | 'number' | 'bool' | 'url' | 'level' | 'key32' | 's3url';

interface FieldSpec {
  env: string;
  flag: string;
  kind: Kind;
  description: string;
  default?: string | number | boolean;
  min?: number;
  max?: number;
  /** 0 is accepted besides min..max (an int whose 0 turns the feature off). */
  zeroOff?: boolean;
  secret?: boolean;
}

export const CONFIG_FIELDS = {
  port: {
    env: 'PORT',
    flag: 'port',
    kind: 'int',
    default: 3000,
    min: 0,
    max: 65535,
    description: 'HTTP port of the API server',
  },
  host: {
    env: 'HOST',
    flag: 'host',
    kind: 'string',
    default: '127.0.0.1',
    description: 'Address the API server binds',
  },
  databaseUrl: {
    env: 'DATABASE_URL',
    flag: 'database-url',
    kind: 'url',
    description: 'Postgres connection string; unset: embedded Postgres in DATA_DIR',
    secret: true,
  },
  dataDir: {
    env: 'DATA_DIR',
    flag: 'data-dir',
    kind: 'string',
    default: '.sfw',
    description: 'Embedded Postgres data and artifacts',
  },
  artifactsDir: {
    env: 'ARTIFACTS_DIR',
    flag: 'artifacts-dir',
    kind: 'string',
    description: 'Where artifacts are stored (default DATA_DIR/artifacts)',
  },
  artifactsUrl: {
    env: 'ARTIFACTS_URL',
    flag: 'artifacts-url',
    kind: 's3url',
    description:
      'Store artifacts in an S3-compatible bucket instead: s3://bucket/prefix (AWS S3, MinIO, R2, Supabase Storage; see docs/operations.md)',
  },
  s3Endpoint: {
    env: 'S3_ENDPOINT',
    flag: 's3-endpoint',
    kind: 'url',
    description: 'S3 endpoint of a store other than AWS (MinIO, R2, Supabase Storage); unset: AWS S3',
  },
  s3Region: {
    env: 'S3_REGION',
    flag: 's3-region',
    kind: 'string',
    description: "The bucket's region (unset: AWS_REGION or the AWS config; us-east-1 with S3_ENDPOINT)",
  },
  s3ForcePathStyle: {
    env: 'S3_FORCE_PATH_STYLE',
    flag: 's3-force-path-style',
    kind: 'bool',
    default: false,
    description:
      'Address the bucket as endpoint/bucket rather than bucket.endpoint (MinIO, Supabase Storage)',
  },
  artifactsRedirect: {
    env: 'ARTIFACTS_REDIRECT',
    flag: 'artifacts-redirect',
    kind: 'bool',
    default: false,
    description:
      'With ARTIFACTS_URL: artifact downloads answer 302 to a presigned URL (5 minutes) instead of streaming through the API',
  },
  awsAccessKeyId: {
    env: 'AWS_ACCESS_KEY_ID',
    flag: 'aws-access-key-id',
    kind: 'string',
    description:
      "S3 credentials with AWS_SECRET_ACCESS_KEY (unset: the AWS SDK's default chain: profile, web identity, instance role)",
    secret: true,
  },
  awsSecretAccessKey: {
    env: 'AWS_SECRET_ACCESS_KEY',
    flag: 'aws-secret-access-key',
    kind: 'string',
    description: 'Secret of AWS_ACCESS_KEY_ID',
    secret: true,
  },
  awsSessionToken: {
    env: 'AWS_SESSION_TOKEN',
    flag: 'aws-session-token',
    kind: 'string',
    description: 'Session token of temporary AWS credentials',
    secret: true,
  },
  allowedHosts: {
    env: 'ALLOWED_HOSTS',
    flag: 'allowed-hosts',
    kind: 'string',
    description:
      'Host headers the API answers, comma-separated: names, *.globs, IPs, or * for any (unset: loopback names without tokens, any Host with tokens)',
  },
  apiInternalUrl: {
    env: 'API_INTERNAL_URL',
    flag: 'api-internal-url',
    kind: 'url',
    description:
      "Where the other API replicas reach this one (e.g. http://$(POD_IP):3000): live views and remote browsers then work whichever replica a runner's socket lands on (unset: one replica)",
  },
  apiToken: {
    env: 'API_TOKEN',
    flag: 'api-token',
    kind: 'string',
    description: 'Token for client endpoints (at least 16 characters beyond loopback)',
    secret: true,
  },
  runnerToken: {
    env: 'RUNNER_TOKEN',
    flag: 'runner-token',
    kind: 'string',
    description: 'Token for runner endpoints (at least 16 characters beyond loopback)',
    secret: true,
  },
  staleSessionTimeoutMs: {
    env: 'STALE_SESSION_TIMEOUT_MS',
    flag: 'stale-session-timeout-ms',
    kind: 'int',
    default: DEFAULT_LEASE_MS,
    min: 1000,
    max: 86_400_000,
    description: 'Lease length: a running session whose runner stopped heartbeating this long is recovered',
  },
  reaperIntervalMs: {
    env: 'REAPER_INTERVAL_MS',
    flag: 'reaper-interval-ms',
    kind: 'int',
    default: 2000,
    min: 100,
    max: 600_000,
    description: 'How often the API looks for lapsed leases',
  },
  dbPoolSize: {
    env: 'DB_POOL_SIZE',
    flag: 'db-pool-size',
    kind: 'int',
    default: 20,
    min: 2,
    max: 1000,
    description:
      "Postgres connections of one API replica's pool (waiting claims hold none; see docs/scaling.md for sizing)",
  },
  dbPollOnly: {
    env: 'DB_POLL_ONLY',
    flag: 'db-poll-only',
    kind: 'bool',
    default: false,
    description: 'Do not LISTEN (for PgBouncer in transaction mode); claims poll instead',
  },
  maxBodyBytes: {
    env: 'MAX_BODY_BYTES',
    flag: 'max-body-bytes',
    kind: 'int',
    default: 32 * 1024 * 1024,
    min: 1024,
    max: 1024 * 1024 * 1024,
    description: 'Largest request body the API accepts',
  },
  maxArtifactBytes: {
    env: 'MAX_ARTIFACT_BYTES',
    flag: 'max-artifact-bytes',
    kind: 'int',
    default: 50 * 1024 * 1024,
    min: 1024,
    max: 1024 * 1024 * 1024,
    description: 'Largest artifact a runner may upload',
  },
  logLevel: {
    env: 'LOG_LEVEL',
    flag: 'log-level',
    kind: 'level',
    default: 'info',
    description: 'fatal, error, warn, info, debug, trace or silent',
  },
  apiBaseUrl: {
    env: 'API_BASE_URL',
    flag: 'api-base-url',
    kind: 'url',
    default: 'http://127.0.0.1:3000',
    description: 'Where runners and the CLI reach the API',
  },
  runnerId: {
    env: 'RUNNER_ID',
    flag: 'runner-id',
    kind: 'string',
    description: 'Runner identity (default: hostname-pid-random, unique per process)',
  },
  maxConcurrency: {
    env: 'MAX_CONCURRENCY',
    flag: 'max-concurrency',
    kind: 'int',
    min: 1,
    max: 256,
    description: `Sessions one runner runs at once (unset: follow scheduler_config, default ${DEFAULT_MAX_CONCURRENCY})`,
  },
  pollIntervalMs: {
    env: 'POLL_INTERVAL_MS',
    flag: 'poll-interval-ms',
    kind: 'int',
    default: DEFAULT_POLL_INTERVAL_MS,
    min: 50,
    max: 600_000,
    description: 'Long-poll length; the pause after an empty poll',
  },
  sessionsDir: {
    env: 'SESSIONS_DIR',
    flag: 'sessions-dir',
    kind: 'string',
    description: 'Folder of code-session modules (defineSession)',
  },
  chromiumPath: {
    env: 'CHROMIUM_PATH',
    flag: 'chromium-path',
    kind: 'string',
    description: 'Chromium executable (default: detected)',
  },
  ffmpegPath: {
    env: 'FFMPEG_PATH',
    flag: 'ffmpeg-path',
    kind: 'string',
    description:
      "ffmpeg (with libvpx) that records a session's video from the page's screencast (default: Playwright's own ffmpeg, else ffmpeg on PATH)",
  },
  maxCaptureBytes: {
    env: 'MAX_CAPTURE_BYTES',
    flag: 'max-capture-bytes',
    kind: 'int',
    default: 50 * 1024 * 1024,
    min: 1024,
    max: 1024 * 1024 * 1024,
    description:
      'Largest HAR, video or downloaded file a runner keeps per file (larger: dropped, with a warning in the result); keep it at most MAX_ARTIFACT_BYTES',
  },
  maxDownloads: {
    env: 'MAX_DOWNLOADS',
    flag: 'max-downloads',
    kind: 'int',
    default: 20,
    min: 0,
    max: 1000,
    description: 'Downloads kept per session with artifacts.downloads (later ones: dropped, with a warning)',
  },
  shutdownTimeoutMs: {
    env: 'SHUTDOWN_TIMEOUT_MS',
    flag: 'shutdown-timeout-ms',
    kind: 'int',
    default: 300_000,
    min: 0,
    max: 86_400_000,
    description: 'How long a stopping runner lets in-flight sessions finish',
  },
  alertRunnerDownMs: {
    env: 'ALERT_RUNNER_DOWN_MS',
    flag: 'alert-runner-down-ms',
    kind: 'int',
    default: 60_000,
    min: 1000,
    max: 86_400_000,
    description: 'RunnerDown alert: no heartbeat for this long and not stopped',
  },
  alertFailureRate: {
    env: 'ALERT_FAILURE_RATE',
    flag: 'alert-failure-rate',
    kind: 'number',
    default: 0.1,
    min: 0,
    max: 1,
    description: 'HighFailureRate alert: failures / sessions executed above this, lifetime and recent',
  },
  alertFailureWindowMs: {
    env: 'ALERT_FAILURE_WINDOW_MS',
    flag: 'alert-failure-window-ms',
    kind: 'int',
    default: 900_000,
    min: 60_000,
    max: 604_800_000,
    description:
      'HighFailureRate alert: the recent window that must also fail (an old bad day stops alerting)',
  },
  alertQueueBackupFactor: {
    env: 'ALERT_QUEUE_BACKUP_FACTOR',
    flag: 'alert-queue-backup-factor',
    kind: 'int',
    default: 10,
    min: 1,
    max: 1_000_000,
    description: 'QueueBackup alert: queued above live runners x max_concurrency x this',
  },
  runnerRetentionMs: {
    env: 'RUNNER_RETENTION_MS',
    flag: 'runner-retention-ms',
    kind: 'int',
    default: 86_400_000,
    min: 0,
    max: 31_536_000_000,
    description: 'A stopped runner leaves the fleet view (runners, metrics, alerts) after this long',
  },
  heartbeatIntervalMs: {
    env: 'HEARTBEAT_INTERVAL_MS',
    flag: 'heartbeat-interval-ms',
    kind: 'int',
    default: DEFAULT_HEARTBEAT_INTERVAL_MS,
    min: 100,
    max: 600_000,
    description:
      'How often a runner heartbeats (renews leases, picks up cancellations); keep well under the lease',
  },
  allowedTargets: {
    env: 'ALLOWED_TARGETS',
    flag: 'allowed-targets',
    kind: 'string',
    description:
      'Hosts flows may reach, comma-separated: names, globs (*.example.com), IPs or CIDRs (unset: any http/https host); held for every connection of the browser, and a listed name resolving to an internal address needs that address or its CIDR listed too',
  },
  allowPrivateTargets: {
    env: 'ALLOW_PRIVATE_TARGETS',
    flag: 'allow-private-targets',
    kind: 'bool',
    default: false,
    description: 'Let flows reach link-local and cloud-metadata addresses (169.254.0.0/16, fe80::/10…)',
  },
  webhookRetryMs: {
    env: 'WEBHOOK_RETRY_MS',
    flag: 'webhook-retry-ms',
    kind: 'int',
    default: 86_400_000,
    min: 1000,
    max: 30 * 86_400_000,
    description: 'How long a webhook delivery is retried after the session ended before it is marked failed',
  },
  webhookBackoffMs: {
    env: 'WEBHOOK_BACKOFF_MS',
    flag: 'webhook-backoff-ms',
    kind: 'int',
    default: 5000,
    min: 10,
    max: 3_600_000,
    description:
      'Wait before the second try of a webhook delivery; doubles each try (with jitter) up to one hour',
  },
  webhookTimeoutMs: {
    env: 'WEBHOOK_TIMEOUT_MS',
    flag: 'webhook-timeout-ms',
    kind: 'int',
    default: 10_000,
    min: 100,
    max: 120_000,
    description: 'Deadline of one webhook try (connect, send, answer); later counts as a failed try',
  },
  webhookConcurrency: {
    env: 'WEBHOOK_CONCURRENCY',
    flag: 'webhook-concurrency',
    kind: 'int',
    default: 16,
    min: 1,
    max: 1000,
    description: 'Webhook deliveries one API replica sends at once',
  },
  stateEncryptionKey: {
    env: 'STATE_ENCRYPTION_KEY',
    flag: 'state-encryption-key',
    kind: 'key32',
    description:
      'Key that encrypts named session states at rest (AES-256-GCM): 32 bytes as 64 hex digits or base64; unset: stored in clear',
    secret: true,
  },
  stateTtlMs: {
    env: 'STATE_TTL_MS',
    flag: 'state-ttl-ms',
    kind: 'int',
    min: 1000,
    max: 366 * 86_400_000,
    description:
      'How long a saved named state lives when the session gives no state.ttlMs; unset: until deleted',
  },
  retentionMs: {
    env: 'RETENTION_MS',
    flag: 'retention-ms',
    kind: 'int',
    default: 2_592_000_000,
    min: 60_000,
    max: 3_650 * 86_400_000,
    zeroOff: true,
    description:
      'Finished sessions and their artifacts are deleted this long after they finished (default 30 days; 0 keeps everything)',
  },
  retentionSucceededMs: {
    env: 'RETENTION_SUCCEEDED_MS',
    flag: 'retention-succeeded-ms',
    kind: 'int',
    min: 60_000,
    max: 3_650 * 86_400_000,
    zeroOff: true,
    description: 'Retention of succeeded sessions (unset: RETENTION_MS; 0 keeps them)',
  },
  retentionFailedMs: {
    env: 'RETENTION_FAILED_MS',
    flag: 'retention-failed-ms',
    kind: 'int',
    min: 60_000,
    max: 3_650 * 86_400_000,
    zeroOff: true,
    description: 'Retention of failed sessions (unset: RETENTION_MS; 0 keeps them)',
  },
  retentionErrorMs: {
    env: 'RETENTION_ERROR_MS',
    flag: 'retention-error-ms',
    kind: 'int',
    min: 60_000,
    max: 3_650 * 86_400_000,
    zeroOff: true,
    description: 'Retention of sessions that ended error (unset: RETENTION_MS; 0 keeps them)',
  },
  retentionCancelledMs: {
    env: 'RETENTION_CANCELLED_MS',
    flag: 'retention-cancelled-ms',
    kind: 'int',
    min: 60_000,
    max: 3_650 * 86_400_000,
    zeroOff: true,
    description: 'Retention of cancelled sessions (unset: RETENTION_MS; 0 keeps them)',
  },
  retentionIntervalMs: {
    env: 'RETENTION_INTERVAL_MS',
    flag: 'retention-interval-ms',
    kind: 'int',
    default: 60_000,
    min: 1000,
    max: 86_400_000,
    description: 'How often an API replica looks for sessions past their retention and for orphan artifacts',
  },
  allowFlowEvaluate: {
    env: 'ALLOW_FLOW_EVALUATE',
    flag: 'allow-flow-evaluate',
    kind: 'bool',
    default: false,
    description: 'Allow the flow action `evaluate` (arbitrary page JavaScript)',
  },
  rateLimitPerSec: {
    env: 'RATE_LIMIT_PER_SEC',
    flag: 'rate-limit-per-sec',
    kind: 'int',
    default: 200,
    min: 0,
    max: 1_000_000,
    description: 'Client requests per second per token or IP (token bucket; 0 turns the limit off)',
  },
  rateLimitBurst: {
    env: 'RATE_LIMIT_BURST',
    flag: 'rate-limit-burst',
    kind: 'int',
    default: 1000,
    min: 1,
    max: 10_000_000,
    description: 'Client requests a token or IP may send at once before RATE_LIMIT_PER_SEC applies',
  },
} as const satisfies Record<string, FieldSpec>;

export type ConfigKey = keyof typeof CONFIG_FIELDS;

type ValueOf<F extends FieldSpec> = F['kind'] extends 'int' | 'number'
  ? number
  : F['kind'] extends 'bool'
    ? boolean
    : string;
type HasDefault<F> = F extends { default: unknown } ? true : false;

export type Config<K extends ConfigKey> = {
  readonly [P in K]: HasDefault<(typeof CONFIG_FIELDS)[P]> extends true
    ? ValueOf<(typeof CONFIG_FIELDS)[P]>
    : ValueOf<(typeof CONFIG_FIELDS)[P]> | undefined;
};

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function parseValue(spec: FieldSpec, raw: string, source: string): string | number | boolean {
  switch (spec.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(raw.trim()))
        throw new ConfigError(`${source} must be a whole number, got "${raw}"`);
      const n = Number(raw);
      if (spec.zeroOff === true && n === 0) return 0;
      if (spec.min !== undefined && n < spec.min)
        throw new ConfigError(
          spec.zeroOff === true
            ? `${source} must be 0 (off) or at least ${spec.min}, got ${n}`
            : `${source} must be at least ${spec.min}, got ${n}`,
        );
      if (spec.max !== undefined && n > spec.max)
        throw new ConfigError(`${source} must be at most ${spec.max}, got ${n}`);
      return n;
    }
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n))
        throw new ConfigError(`${source} must be a number, got "${raw}"`);
      if (spec.min !== undefined && n < spec.min)
        throw new ConfigError(`${source} must be at least ${spec.min}, got ${n}`);
      if (spec.max !== undefined && n > spec.max)
        throw new ConfigError(`${source} must be at most ${spec.max}, got ${n}`);
      return n;
    }
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on', ''].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw new ConfigError(`${source} must be true or false, got "${raw}"`);
    }
    case 'url': {
      try {
        const u = new URL(raw);
        if (!['http:', 'https:', 'postgres:', 'postgresql:'].includes(u.protocol))
          throw new Error('protocol');
      } catch {
        throw new ConfigError(`${source} must be a URL (http://…, https://… or postgres://…), got "${raw}"`);
      }
      return raw;
    }
    case 'level':
      if (!LEVELS.includes(raw))
        throw new ConfigError(`${source} must be one of ${LEVELS.join(', ')}, got "${raw}"`);
      return raw;
    case 'string':
      if (raw.trim() === '') throw new ConfigError(`${source} must not be empty`);
      return raw;
    case 'key32':
      keyBytes(raw, source);
      return raw;
    case 's3url':
      parseArtifactsUrl(raw, source);
      return raw;
  }
}

/**
 * ARTIFACTS_URL as bucket and key prefix: s3://bucket or s3://bucket/some/prefix, the bucket named as S3
 * names them (3-63 lowercase letters, digits, dots and hyphens); throws a ConfigError naming `source`.
 */
export function parseArtifactsUrl(raw: string, source = 'ARTIFACTS_URL'): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/?#]+)(\/[^?#]*)?$/.exec(raw.trim());
  const bucket = m?.[1] ?? '';
  const prefix = (m?.[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (!m || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || prefix.split('/').some((p) => p === '..'))
    throw new ConfigError(
      `${source} must be s3://bucket or s3://bucket/prefix (a bucket of 3-63 lowercase letters, digits, dots and hyphens), got "${raw}"`,
    );
  return { bucket, prefix };
}

/**
 * A 32-byte key given as 64 hex digits or as base64 (standard or URL-safe); throws a ConfigError naming
 * `source` otherwise. (`openssl rand -base64 32` makes one.)
 */
export function keyBytes(raw: string, source: string): Buffer {
  const text = raw.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(text)
    ? Buffer.from(text, 'hex')
    : /^[A-Za-z0-9+/_-]{43}=?$/.test(text)
      ? Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
      : undefined;
  if (key?.length !== 32)
    throw new ConfigError(
      `${source} must be a 32-byte key: 64 hex digits or 44 characters of base64 (make one with: openssl rand -base64 32)`,
    );
  return key;
}

export interface ConfigSources {
  flags?: Record<string, string | boolean | undefined>;
  env?: Record<string, string | undefined>;
}

/** Reads and validates the named fields, flag > env > default. Throws ConfigError naming the flag or variable. */
export function loadConfig<K extends ConfigKey>(keys: readonly K[], sources: ConfigSources = {}): Config<K> {
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const spec: FieldSpec = CONFIG_FIELDS[key];
    const flagValue = flags[spec.flag];
    const envValue = env[spec.env];
    if (flagValue !== undefined) {
      const raw = typeof flagValue === 'boolean' ? String(flagValue) : flagValue;
      out[key] = parseValue(spec, raw, `--${spec.flag}`);
    } else if (envValue !== undefined && envValue !== '') {
      out[key] = parseValue(spec, envValue, spec.env);
    } else {
      out[key] = spec.default;
    }
  }
  return Object.freeze(out) as Config<K>;
}

/** Rows for help output and the README's configuration table. */
export function describeConfig(
  keys: readonly ConfigKey[],
): { flag: string; env: string; default: string; description: string }[] {
  return keys.map((key) => {
    const spec: FieldSpec = CONFIG_FIELDS[key];
    return {
      flag: `--${spec.flag}`,
      env: spec.env,
      default: spec.default === undefined ? '' : String(spec.default),
      description: spec.description,
    };
  });
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/**
 * Whether an IP address literal is loopback: 127.0.0.0/8, ::1, or 127.x mapped into IPv6. Names are not
 * addresses (`127.lan.example` is a name): resolve them first.
 */
export function isLoopbackAddress(address: string): boolean {
  const a = address.replace(/^\[(.*)\]$/, '$1');
  const kind = isIP(a);
  return kind !== 0 && LOOPBACK.check(a, kind === 4 ? 'ipv4' : 'ipv6');
}
