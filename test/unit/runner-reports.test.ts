import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ApiError, NetworkError } from '../../src/sdk/client.js';
import type { CompleteBody } from '../../src/protocol/schemas.js';
import { ReportQueue } from '../../src/runner/reports.js';

const log = pino({ level: 'silent' });
const LEASE = '0190f1a0-0000-7000-8000-000000000001';
const noSleep = async () => {};

function body(status: CompleteBody['status'] = 'succeeded'): CompleteBody {
  return { leaseToken: LEASE, status, result: { ok: true } };
}

describe('ReportQueue', () => {
  it('retries transient failures (network, 503, 429) until the API accepts the result', async () => {
    const failures: Error[] = [
      new NetworkError('cannot reach the API: ECONNREFUSED', false, null),
      new ApiError(503, 'UNAVAILABLE', 'database unavailable'),
      new ApiError(429, 'RATE_LIMITED', 'slow down'),
      new ApiError(500, 'INTERNAL', 'boom'),
    ];
    const calls: CompleteBody[] = [];
    const q = new ReportQueue({
      log,
      sleep: noSleep,
      complete: async (_id, b) => {
        calls.push(b);
        const f = failures.shift();
        if (f) throw f;
      },
    });
    await expect(q.submit({ sessionId: 's1', body: body() })).resolves.toBe('accepted');
    expect(calls).toHaveLength(5);
    expect(calls.every((c) => c.status === 'succeeded')).toBe(true);
    expect(q.size).toBe(0);
  });

  it('drops the result on 409 (lease lost) and 404, without retrying', async () => {
    for (const err of [
      new ApiError(409, 'LEASE_LOST', 'lease lost'),
      new ApiError(404, 'NOT_FOUND', 'gone'),
    ]) {
      let calls = 0;
      const q = new ReportQueue({
        log,
        sleep: noSleep,
        complete: async () => {
          calls++;
          throw err;
        },
      });
      await expect(q.submit({ sessionId: 's1', body: body() })).resolves.toBe('lease-lost');
      expect(calls).toBe(1);
    }
  });

  it('replaces a result the API refuses as malformed by an error outcome naming the refusal', async () => {
    const calls: CompleteBody[] = [];
    const q = new ReportQueue({
      log,
      sleep: noSleep,
      complete: async (_id, b) => {
        calls.push(b);
        if (b.status === 'succeeded') throw new ApiError(413, 'PAYLOAD_TOO_LARGE', 'body too large');
      },
    });
    await expect(q.submit({ sessionId: 's1', body: body() })).resolves.toBe('accepted');
    expect(calls.map((c) => c.status)).toEqual(['succeeded', 'error']);
    expect(calls[1]!.errorMessage).toContain('body too large');
    expect(calls[1]!.leaseToken).toBe(LEASE);
  });

  it('waits for the artifact uploads before completing', async () => {
    const order: string[] = [];
    let release!: () => void;
    const upload = new Promise<void>((r) => (release = r)).then(() => order.push('upload'));
    const q = new ReportQueue({ log, sleep: noSleep, complete: async () => void order.push('complete') });
    const p = q.submit({ sessionId: 's1', body: body(), before: upload });
    await Promise.resolve();
    expect(order).toEqual([]);
    release();
    await p;
    expect(order).toEqual(['upload', 'complete']);
  });

  it('a repeated submit of the same session joins the delivery in flight', async () => {
    let calls = 0;
    const q = new ReportQueue({ log, sleep: noSleep, complete: async () => void calls++ });
    const [a, b] = await Promise.all([
      q.submit({ sessionId: 's1', body: body() }),
      q.submit({ sessionId: 's1', body: body() }),
    ]);
    expect([a, b]).toEqual(['accepted', 'accepted']);
    expect(calls).toBe(1);
  });

  it('keeps retrying with growing delays and stops only when abandoned', async () => {
    const delays: number[] = [];
    const q: ReportQueue = new ReportQueue({
      log,
      backoffMs: 10,
      maxBackoffMs: 80,
      sleep: async (ms) => {
        delays.push(ms);
        if (delays.length === 50) q.abandon();
      },
      complete: async () => {
        throw new NetworkError('cannot reach the API: ECONNRESET', true, null);
      },
    });
    const p = q.submit({ sessionId: 's1', body: body() });
    expect(q.has(LEASE)).toBe(true);
    await expect(p).resolves.toBe('abandoned');
    expect(delays).toHaveLength(50);
    expect(Math.max(...delays)).toBeLessThanOrEqual(80);
    expect(delays[0]!).toBeLessThanOrEqual(10);
    expect(delays.slice(10).every((d) => d >= 40)).toBe(true);
  });
});
