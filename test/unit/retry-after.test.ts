import { describe, expect, it } from 'vitest';
import { flowConcurrencyKey, retryAfterMs } from '../../src/protocol/limits.js';

describe('Retry-After', () => {
  const now = Date.parse('2026-12-02T03:00:00Z');
  it('reads delay-seconds and HTTP dates, and nothing else', () => {
    expect(retryAfterMs('120', now)).toBe(120_000);
    expect(retryAfterMs(' 0 ', now)).toBe(0);
    expect(retryAfterMs('Wed, 02 Dec 2026 03:00:30 GMT', now)).toBe(30_000);
    // A date already past asks for no wait.
    expect(retryAfterMs('Wed, 02 Dec 2026 02:00:00 GMT', now)).toBe(0);
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs('-5', now)).toBeUndefined();
    expect(retryAfterMs('1.5', now)).toBeUndefined();
  });
});

describe("a flow's default concurrency key", () => {
  it('is the host of its first goto, nested steps included, placeholders filled from the input', () => {
    expect(flowConcurrencyKey({ steps: [{ action: 'goto', url: 'https://Shop.Example.com/a' }] })).toBe(
      'shop.example.com',
    );
    expect(
      flowConcurrencyKey({
        steps: [
          { action: 'waitFor', ms: 1 },
          {
            action: 'if',
            when: { selector: 'a' },
            steps: [{ action: 'goto', url: 'http://127.0.0.1:8080/x' }],
          },
          { action: 'goto', url: 'https://later.example/' },
        ],
      }),
    ).toBe('127.0.0.1:8080');
    expect(
      flowConcurrencyKey({
        steps: [{ action: 'goto', url: '{{input.base}}/x' }],
        base: 'https://top.example',
      }),
    ).toBe('top.example');
    expect(flowConcurrencyKey({ steps: [{ action: 'goto', url: '{{input.base}}/x' }] })).toBeUndefined();
    expect(flowConcurrencyKey({ steps: [{ action: 'goto', url: 'not a url' }] })).toBeUndefined();
    expect(flowConcurrencyKey({ steps: [] })).toBeUndefined();
    expect(flowConcurrencyKey(null)).toBeUndefined();
  });
});
