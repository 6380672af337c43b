import { describe, expect, it } from 'vitest';
import {
  DEFAULT_BASE_BUDGET_BYTES,
  DEFAULT_SESSION_BUDGET_BYTES,
  MB,
  MIN_SESSION_BUDGET_BYTES,
  SAFETY_FACTOR,
  SessionBudget,
  effectiveConcurrency,
} from '../../src/runner/admission.js';

const GB = 1024 * MB;
const base = { perSessionBytes: DEFAULT_SESSION_BUDGET_BYTES, baseBytes: DEFAULT_BASE_BUDGET_BYTES };

describe('effectiveConcurrency', () => {
  it("follows the guide's table: 2 GB holds 3 sessions, 4 GB holds 7, 1 GB holds 1", () => {
    expect(
      effectiveConcurrency({
        ...base,
        maxConcurrency: 10,
        freeMemoryBytes: 2 * GB,
        activeBrowserSessions: 0,
      }),
    ).toBe(3);
    expect(
      effectiveConcurrency({
        ...base,
        maxConcurrency: 10,
        freeMemoryBytes: 4 * GB,
        activeBrowserSessions: 0,
      }),
    ).toBe(7);
    expect(
      effectiveConcurrency({
        ...base,
        maxConcurrency: 10,
        freeMemoryBytes: 1 * GB,
        activeBrowserSessions: 0,
      }),
    ).toBe(1);
  });

  it('never exceeds max concurrency', () => {
    expect(
      effectiveConcurrency({
        ...base,
        maxConcurrency: 3,
        freeMemoryBytes: 64 * GB,
        activeBrowserSessions: 0,
      }),
    ).toBe(3);
  });

  it('counts memory taken by running sessions as theirs, not as a shortage', () => {
    // 2 GB machine with 2 sessions running: ~1 GB left, still a capacity of 3.
    expect(
      effectiveConcurrency({ ...base, maxConcurrency: 5, freeMemoryBytes: 1 * GB, activeBrowserSessions: 2 }),
    ).toBe(3);
  });

  it('stays at 1 while idle memory allows one session, 0 below that', () => {
    expect(
      effectiveConcurrency({
        ...base,
        maxConcurrency: 5,
        freeMemoryBytes: 600 * MB,
        activeBrowserSessions: 0,
      }),
    ).toBe(1);
    expect(
      effectiveConcurrency({
        ...base,
        maxConcurrency: 5,
        freeMemoryBytes: 300 * MB,
        activeBrowserSessions: 0,
      }),
    ).toBe(0);
    expect(
      effectiveConcurrency({ ...base, maxConcurrency: 5, freeMemoryBytes: -5, activeBrowserSessions: 0 }),
    ).toBe(0);
  });
});

describe('SessionBudget', () => {
  it("starts from the guide's 500 MB", () => {
    const b = new SessionBudget();
    expect(b.bytes).toBe(DEFAULT_SESSION_BUDGET_BYTES);
    expect(b.measuredBytes).toBeUndefined();
  });

  it('learns from measured browser memory per active session, with headroom', () => {
    const b = new SessionBudget();
    b.observe(240 * MB, 4); // 60 MB each
    expect(b.measuredBytes).toBe(60 * MB);
    expect(b.bytes).toBe(Math.round(60 * MB * SAFETY_FACTOR));
    b.observe(400 * MB, 2); // 200 MB each moves the average, not all the way
    expect(b.measuredBytes!).toBeGreaterThan(60 * MB);
    expect(b.measuredBytes!).toBeLessThan(200 * MB);
  });

  it('ignores samples without active sessions or memory, and keeps a floor', () => {
    const b = new SessionBudget();
    b.observe(300 * MB, 0);
    b.observe(0, 3);
    expect(b.measuredBytes).toBeUndefined();
    b.observe(10 * MB, 5);
    expect(b.bytes).toBe(MIN_SESSION_BUDGET_BYTES);
  });

  it('lets a machine with little memory run more sessions once they are measured light', () => {
    const b = new SessionBudget();
    const at = () =>
      effectiveConcurrency({
        maxConcurrency: 10,
        freeMemoryBytes: 2 * GB,
        activeBrowserSessions: 0,
        perSessionBytes: b.bytes,
        baseBytes: DEFAULT_BASE_BUDGET_BYTES,
      });
    expect(at()).toBe(3);
    b.observe(180 * MB, 3);
    expect(at()).toBe(10);
  });
});
