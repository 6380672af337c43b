import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/errors.js';
import type { QueueView, RunnerView } from '../../src/protocol/schemas.js';
import { DEFAULT_ALERT_THRESHOLDS, evaluateAlerts } from '../../src/server/alerts.js';

const ALERT_KEYS = [
  'alertRunnerDownMs',
  'alertFailureRate',
  'alertFailureWindowMs',
  'alertQueueBackupFactor',
  'runnerRetentionMs',
] as const;

function runner(over: Partial<RunnerView>): RunnerView {
  return {
    runnerId: 'r1',
    status: 'running',
    live: true,
    lastHeartbeat: new Date().toISOString(),
    heartbeatAgeMs: 1000,
    activeSessions: 0,
    runningSessions: 0,
    maxConcurrency: 3,
    effectiveConcurrency: null,
    totalSessionsExecuted: 0,
    totalFailures: 0,
    uptimeSeconds: 10,
    startedAt: new Date().toISOString(),
    hostname: null,
    version: null,
    memoryRssBytes: null,
    browserMemoryBytes: null,
    types: [],
    ...over,
  };
}
const queue = (queued: number): QueueView => ({
  byStatus: { queued },
  queuedByPriority: [],
  queuedByType: [],
  oldestQueuedAgeMs: null,
  runnersLive: 0,
  fleetCapacity: 0,
});

describe('alert thresholds from the config schema', () => {
  it("defaults to the guide's values", () => {
    expect(loadConfig(ALERT_KEYS)).toEqual({
      alertRunnerDownMs: 60_000,
      alertFailureRate: 0.1,
      alertFailureWindowMs: 900_000,
      alertQueueBackupFactor: 10,
      runnerRetentionMs: 86_400_000,
    });
  });

  it('reads fractional failure rates and names the variable when a value is wrong', () => {
    expect(loadConfig(ALERT_KEYS, { env: { ALERT_FAILURE_RATE: '0.25' } }).alertFailureRate).toBe(0.25);
    expect(loadConfig(ALERT_KEYS, { flags: { 'alert-failure-rate': '0.5' } }).alertFailureRate).toBe(0.5);
    for (const bad of ['1.5', 'ten', '-0.1']) {
      expect(() => loadConfig(ALERT_KEYS, { env: { ALERT_FAILURE_RATE: bad } })).toThrow(ConfigError);
      expect(() => loadConfig(ALERT_KEYS, { env: { ALERT_FAILURE_RATE: bad } })).toThrow(
        /ALERT_FAILURE_RATE/,
      );
    }
    expect(() => loadConfig(ALERT_KEYS, { env: { ALERT_QUEUE_BACKUP_FACTOR: '2.5' } })).toThrow(
      /ALERT_QUEUE_BACKUP_FACTOR must be a whole number/,
    );
  });
});

describe('evaluateAlerts with configured thresholds', () => {
  it('fires RunnerDown after the configured silence, never for a stopped runner', () => {
    const t = { ...DEFAULT_ALERT_THRESHOLDS, runnerDownMs: 5000 };
    const names = (r: RunnerView) => evaluateAlerts([r], queue(0), [], t).map((a) => a.name);
    expect(names(runner({ heartbeatAgeMs: 4000 }))).toEqual([]);
    expect(names(runner({ heartbeatAgeMs: 6000 }))).toEqual(['RunnerDown']);
    expect(names(runner({ heartbeatAgeMs: 600_000, status: 'stopped', live: false }))).toEqual([]);
  });

  it('fires HighFailureRate only when the lifetime and the recent rate are both above the threshold', () => {
    const r = runner({ totalSessionsExecuted: 100, totalFailures: 30 });
    const at = (failureRate: number, recent: { executed: number; failures: number }) =>
      evaluateAlerts([r], queue(0), [{ runnerId: 'r1', ...recent }], {
        ...DEFAULT_ALERT_THRESHOLDS,
        failureRate,
      }).map((a) => a.name);
    expect(at(0.1, { executed: 10, failures: 5 })).toEqual(['HighFailureRate']);
    expect(at(0.1, { executed: 10, failures: 0 })).toEqual([]); // an old bad day
    expect(at(0.4, { executed: 10, failures: 5 })).toEqual([]); // lifetime 0.3 under a raised threshold
  });

  it('fires QueueBackup above live runners × max_concurrency × the configured factor', () => {
    const fleet = [
      runner({ runnerId: 'a', maxConcurrency: 3 }),
      runner({ runnerId: 'b', maxConcurrency: 2 }),
    ];
    const t = { ...DEFAULT_ALERT_THRESHOLDS, queueBackupFactor: 4 };
    expect(evaluateAlerts(fleet, queue(20), [], t)).toEqual([]);
    const [alert] = evaluateAlerts(fleet, queue(21), [], t);
    expect(alert).toMatchObject({ name: 'QueueBackup', value: 21, threshold: 20 });
  });
});
