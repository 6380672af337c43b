import { describe, expect, it } from 'vitest';
import { CONFIG_FIELDS, describeConfig, isLoopbackAddress, loadConfig } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/errors.js';

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('uses defaults when nothing is set', () => {
    const c = loadConfig(['port', 'host', 'staleSessionTimeoutMs', 'rateLimitPerSec', 'allowFlowEvaluate']);
    expect(c).toEqual({
      port: 3000,
      host: '127.0.0.1',
      staleSessionTimeoutMs: 30_000,
      rateLimitPerSec: 200,
      allowFlowEvaluate: false,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('prefers flag over env over default', () => {
    const keys = ['port', 'logLevel'] as const;
    expect(loadConfig(keys, { env: { PORT: '4000' } }).port).toBe(4000);
    expect(loadConfig(keys, { env: { PORT: '4000' }, flags: { port: '5000' } }).port).toBe(5000);
    // An empty variable counts as unset.
    expect(loadConfig(keys, { env: { PORT: '' } }).port).toBe(3000);
    expect(loadConfig(keys, { env: { LOG_LEVEL: 'debug' } }).logLevel).toBe('debug');
  });

  it('reads only the keys asked for', () => {
    const c = loadConfig(['port'], { env: { HOST: '0.0.0.0', PORT: '1' } });
    expect(Object.keys(c)).toEqual(['port']);
  });

  it('names the variable or flag in every validation error', () => {
    expect(configError(() => loadConfig(['port'], { env: { PORT: 'abc' } }))).toMatch(
      /^PORT must be a whole number/,
    );
    expect(configError(() => loadConfig(['port'], { flags: { port: '70000' } }))).toMatch(
      /^--port must be at most 65535/,
    );
    expect(configError(() => loadConfig(['port'], { env: { PORT: '-1' } }))).toMatch(
      /^PORT must be at least 0/,
    );
    expect(configError(() => loadConfig(['port'], { env: { PORT: '1.5' } }))).toMatch(/PORT/);
    expect(configError(() => loadConfig(['dbPollOnly'], { env: { DB_POLL_ONLY: 'maybe' } }))).toMatch(
      /^DB_POLL_ONLY must be true or false/,
    );
    expect(configError(() => loadConfig(['databaseUrl'], { env: { DATABASE_URL: 'mysql://x/y' } }))).toMatch(
      /^DATABASE_URL must be a URL/,
    );
    expect(configError(() => loadConfig(['apiBaseUrl'], { flags: { 'api-base-url': 'nope' } }))).toMatch(
      /^--api-base-url must be a URL/,
    );
    expect(configError(() => loadConfig(['logLevel'], { env: { LOG_LEVEL: 'loud' } }))).toMatch(
      /^LOG_LEVEL must be one of/,
    );
    expect(configError(() => loadConfig(['host'], { flags: { host: '  ' } }))).toMatch(
      /^--host must not be empty/,
    );
    expect(configError(() => loadConfig(['rateLimitBurst'], { env: { RATE_LIMIT_BURST: '0' } }))).toMatch(
      /^RATE_LIMIT_BURST must be at least 1/,
    );
    expect(
      configError(() => loadConfig(['staleSessionTimeoutMs'], { env: { STALE_SESSION_TIMEOUT_MS: '10' } })),
    ).toMatch(/^STALE_SESSION_TIMEOUT_MS must be at least 1000/);
  });

  it('parses booleans leniently and boolean flags', () => {
    for (const v of ['1', 'true', 'YES', 'on'])
      expect(
        loadConfig(['allowPrivateTargets'], { env: { ALLOW_PRIVATE_TARGETS: v } }).allowPrivateTargets,
      ).toBe(true);
    for (const v of ['0', 'false', 'no', 'OFF'])
      expect(loadConfig(['allowFlowEvaluate'], { env: { ALLOW_FLOW_EVALUATE: v } }).allowFlowEvaluate).toBe(
        false,
      );
    expect(loadConfig(['dbPollOnly'], { flags: { 'db-poll-only': true } }).dbPollOnly).toBe(true);
  });

  it('keeps ALLOWED_TARGETS as text for the target policy to parse', () => {
    expect(loadConfig(['allowedTargets']).allowedTargets).toBeUndefined();
    expect(
      loadConfig(['allowedTargets'], { env: { ALLOWED_TARGETS: 'example.com,10.0.0.0/8' } }).allowedTargets,
    ).toBe('example.com,10.0.0.0/8');
  });
});

describe('the config schema', () => {
  it('binds every field to a distinct upper-case variable and a distinct kebab-case flag', () => {
    const envs = new Set<string>();
    const flags = new Set<string>();
    for (const [key, spec] of Object.entries(CONFIG_FIELDS)) {
      expect(spec.env, key).toMatch(/^[A-Z][A-Z0-9_]*$/);
      expect(spec.flag, key).toMatch(/^[a-z][a-z0-9-]*$/);
      expect(spec.description.length, key).toBeGreaterThan(10);
      envs.add(spec.env);
      flags.add(spec.flag);
    }
    expect(envs.size).toBe(Object.keys(CONFIG_FIELDS).length);
    expect(flags.size).toBe(Object.keys(CONFIG_FIELDS).length);
  });

  it('has a valid default for every field that declares one', () => {
    const keys = Object.keys(CONFIG_FIELDS) as (keyof typeof CONFIG_FIELDS)[];
    expect(() => loadConfig(keys)).not.toThrow();
  });

  it('keeps the names the guide and the design fix', () => {
    const envs = Object.values(CONFIG_FIELDS).map((f) => f.env);
    for (const name of [
      'PORT',
      'HOST',
      'DATABASE_URL',
      'DATA_DIR',
      'API_TOKEN',
      'RUNNER_TOKEN',
      'STALE_SESSION_TIMEOUT_MS',
      'API_BASE_URL',
      'RUNNER_ID',
      'MAX_CONCURRENCY',
      'POLL_INTERVAL_MS',
      'SHUTDOWN_TIMEOUT_MS',
      'ALLOWED_TARGETS',
      'ALLOW_PRIVATE_TARGETS',
      'ALLOW_FLOW_EVALUATE',
      'RATE_LIMIT_PER_SEC',
      'RATE_LIMIT_BURST',
    ])
      expect(envs).toContain(name);
    expect(CONFIG_FIELDS.pollIntervalMs.default).toBe(5000);
    expect(CONFIG_FIELDS.port.default).toBe(3000);
  });

  it('marks credentials secret', () => {
    expect(CONFIG_FIELDS.apiToken.secret).toBe(true);
    expect(CONFIG_FIELDS.runnerToken.secret).toBe(true);
    expect(CONFIG_FIELDS.databaseUrl.secret).toBe(true);
  });

  it('describes fields for help and the README table', () => {
    const rows = describeConfig(['port', 'apiToken']);
    expect(rows[0]).toMatchObject({ flag: '--port', env: 'PORT', default: '3000' });
    expect(rows[1]).toMatchObject({ flag: '--api-token', env: 'API_TOKEN', default: '' });
  });
});

describe('isLoopbackAddress', () => {
  it('knows loopback addresses from the rest, and names from addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])
      expect(isLoopbackAddress(h), h).toBe(true);
    for (const h of [
      '0.0.0.0',
      '::',
      '10.0.0.1',
      '128.0.0.1',
      '::ffff:10.0.0.1',
      'example.com',
      // Names are resolved by the server, never judged by how they start.
      '127.lan.example',
      '127.0.0.1.nip.io',
      'localhost',
    ])
      expect(isLoopbackAddress(h), h).toBe(false);
  });
});
