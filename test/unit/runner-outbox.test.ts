import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ApiError, NetworkError } from '../../src/sdk/client.js';
import type { CompleteBody, CompleteItem, CompleteOutcome } from '../../src/protocol/schemas.js';
import { Outbox, type OutboxDeps } from '../../src/runner/outbox.js';
import { retryDelay } from '../../src/runner/retry.js';

const log = pino({ level: 'silent' });
let leases = 0;

function body(status: CompleteBody['status'] = 'succeeded'): CompleteBody {
  leases++;
  return { leaseToken: `0190f1a0-0000-7000-8000-${String(leases).padStart(12, '0')}`, status };
}

type Answer = (items: CompleteItem[]) => Promise<CompleteOutcome[]>;
const acceptAll: Answer = async (items) => items.map((i) => ({ id: i.id, outcome: 'accepted' }));

/** An outbox whose fallback door records each request and answers with `answer`. */
function outbox(answer: Answer = acceptAll, over: Partial<OutboxDeps> = {}) {
  const sent: CompleteItem[][] = [];
  const box = new Outbox({
    send: async (items) => {
      sent.push(items);
      return answer(items);
    },
    claimWillCarry: () => false,
    log,
    retry: { backoffMs: 1, maxBackoffMs: 4 },
    windowMs: 1,
    carryMs: 30,
    ...over,
  });
  return { box, sent };
}

/** Waits until `ok` holds (the outbox works on timers of a few milliseconds). */
async function until(ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('condition not met within 2 s');
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe('Outbox', () => {
  it('sends reports that finish together in one request and gives each its own typed outcome', async () => {
    const { box, sent } = outbox(async (items) =>
      items
        .filter((i) => i.id !== 'e')
        .map((i) => ({
          id: i.id,
          outcome: ({ b: 'lease-lost', c: 'not-found', d: 'conflict' } as const)[i.id] ?? 'accepted',
        })),
    );
    const outcomes = await Promise.all(
      ['a', 'b', 'c', 'd', 'e'].map((id) => box.submit({ sessionId: id, body: body() })),
    );
    expect(sent.map((r) => r.map((i) => i.id))).toEqual([['a', 'b', 'c', 'd', 'e']]);
    // A report the answer does not name was not stored: never taken as accepted.
    expect(outcomes).toEqual(['accepted', 'lease-lost', 'not-found', 'conflict', 'lease-lost']);
    expect(box.size).toBe(0);
  });

  it('a claim that promised to carry a report carries it, and its answer settles it', async () => {
    let promised = 0;
    const { box, sent } = outbox(acceptAll, { claimWillCarry: () => (promised++, true) });
    const delivered = box.submit({ sessionId: 'a', body: body() });
    await until(() => box.carryable === 1);
    expect(promised).toBe(1);
    const { carried, reply } = box.carry(async (complete) => ({
      sessions: [],
      completed: complete.map((i) => ({ id: i.id, outcome: 'accepted' as const })),
    }));
    expect(carried).toBe(1);
    expect(box.carryable).toBe(0);
    await reply;
    expect(await delivered).toBe('accepted');
    expect(sent).toEqual([]);
    // With nothing ready, a claim carries nothing.
    expect(box.carry(async () => ({ sessions: [], completed: [] })).carried).toBe(0);
  });

  it('a report no claim takes within carryMs goes through the fallback door', async () => {
    const { box, sent } = outbox(acceptAll, { claimWillCarry: () => true });
    const t0 = Date.now();
    expect(await box.submit({ sessionId: 'late', body: body() })).toBe('accepted');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    expect(sent.map((r) => r.map((i) => i.id))).toEqual([['late']]);
  });

  it('retries transient failures (network, 5xx, 429) until the API accepts the result, unchanged', async () => {
    const failures: Error[] = [
      new NetworkError('cannot reach the API: ECONNREFUSED', false, null),
      new ApiError(503, 'UNAVAILABLE', 'database unavailable'),
      new ApiError(429, 'RATE_LIMITED', 'slow down'),
      new ApiError(500, 'INTERNAL', 'boom'),
    ];
    const { box, sent } = outbox(async (items) => {
      const f = failures.shift();
      if (f) throw f;
      return acceptAll(items);
    });
    const b = body();
    expect(await box.submit({ sessionId: 's1', body: b })).toBe('accepted');
    expect(sent).toHaveLength(5);
    expect(sent.every((r) => r[0]!.status === 'succeeded' && r[0]!.leaseToken === b.leaseToken)).toBe(true);
  });

  it('a failed claim loses nothing: its reports are retried through the fallback door', async () => {
    const { box, sent } = outbox();
    const delivered = box.submit({ sessionId: 'a', body: body() });
    await until(() => box.carryable === 1);
    const { reply } = box.carry(async () => {
      throw new NetworkError('cannot reach the API: ECONNRESET', true, null);
    });
    await expect(reply).rejects.toBeInstanceOf(NetworkError);
    expect(await delivered).toBe('accepted');
    expect(sent.map((r) => r.map((i) => i.id))).toEqual([['a']]);
  });

  it('reports refused together go alone; one refused alone becomes an error naming the refusal', async () => {
    const { box, sent } = outbox(async (items) => {
      const big = items.find((i) => i.id === 'big' && i.status === 'succeeded');
      if (big) throw new ApiError(413, 'PAYLOAD_TOO_LARGE', 'body too large');
      return acceptAll(items);
    });
    const big = body();
    const both = [
      box.submit({ sessionId: 'big', body: big }),
      box.submit({ sessionId: 'small', body: body() }),
    ];
    await until(() => box.carryable === 2);
    // The claim carrying both is refused: it says nothing of which report was wrong.
    const { carried, reply } = box.carry(async () => {
      throw new ApiError(400, 'VALIDATION', 'body.complete.0.result: too large');
    });
    expect(carried).toBe(2);
    await expect(reply).rejects.toBeInstanceOf(ApiError);
    expect(await Promise.all(both)).toEqual(['accepted', 'accepted']);
    const requests = sent.map((r) => r.map((i) => `${i.id}:${i.status}`));
    expect(requests.every((r) => r.length === 1)).toBe(true);
    expect(requests.flat().sort()).toEqual(['big:error', 'big:succeeded', 'small:succeeded']);
    const replaced = sent.flat().find((i) => i.id === 'big' && i.status === 'error')!;
    expect(replaced.leaseToken).toBe(big.leaseToken);
    expect(replaced.errorMessage).toContain('body too large');
  });

  it('an error report refused alone is dropped', async () => {
    const { box, sent } = outbox(async () => {
      throw new ApiError(401, 'UNAUTHORIZED', 'bad token');
    });
    expect(await box.submit({ sessionId: 'a', body: body() })).toBe('abandoned');
    expect(sent.map((r) => r[0]!.status)).toEqual(['succeeded', 'error']);
  });

  it('keeps two reports about one session in separate requests', async () => {
    const { box, sent } = outbox();
    await Promise.all([
      box.submit({ sessionId: 'x', body: body() }),
      box.submit({ sessionId: 'y', body: body() }),
      box.submit({ sessionId: 'x', body: body('failed') }),
    ]);
    expect(
      sent
        .flat()
        .map((i) => i.id)
        .sort(),
    ).toEqual(['x', 'x', 'y']);
    expect(sent.every((r) => new Set(r.map((i) => i.id)).size === r.length)).toBe(true);
  });

  it('waits for the artifact uploads before the report is ready', async () => {
    const order: string[] = [];
    let release!: () => void;
    const upload = new Promise<void>((r) => (release = r)).then(() => order.push('upload'));
    const { box } = outbox(async (items) => {
      order.push('complete');
      return acceptAll(items);
    });
    const p = box.submit({ sessionId: 's1', body: body(), before: upload });
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual([]);
    expect(box.carryable).toBe(0);
    release();
    await p;
    expect(order).toEqual(['upload', 'complete']);
  });

  it('a repeated submit of the same attempt joins the delivery in flight', async () => {
    const { box, sent } = outbox();
    const b = body();
    const [x, y] = await Promise.all([
      box.submit({ sessionId: 's1', body: b }),
      box.submit({ sessionId: 's1', body: b }),
    ]);
    expect([x, y]).toEqual(['accepted', 'accepted']);
    expect(sent.flat()).toHaveLength(1);
  });

  it('keeps retrying while the API is away and stops only when abandoned', async () => {
    const { box, sent } = outbox(async () => {
      throw new NetworkError('cannot reach the API: ECONNRESET', true, null);
    });
    const p = box.submit({ sessionId: 's1', body: body() });
    await until(() => sent.length >= 10);
    expect(box.size).toBe(1);
    box.abandon();
    expect(await p).toBe('abandoned');
    expect(box.size).toBe(0);
    await box.drain();
    // A report after abandon() is not sent.
    const before = sent.length;
    expect(await box.submit({ sessionId: 's2', body: body() })).toBe('abandoned');
    expect(sent.length).toBe(before);
  });

  it('drain() waits for every report to settle', async () => {
    let answer!: () => void;
    const gate = new Promise<void>((r) => (answer = r));
    const { box } = outbox(async (items) => {
      await gate;
      return acceptAll(items);
    });
    const p = box.submit({ sessionId: 's1', body: body() });
    let drained = false;
    const d = box.drain().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(drained).toBe(false);
    answer();
    await d;
    expect(await p).toBe('accepted');
  });
});

describe('retryDelay', () => {
  it('grows from backoffMs, never past maxBackoffMs', () => {
    const policy = { backoffMs: 10, maxBackoffMs: 80 };
    const delays = Array.from({ length: 50 }, (_, i) => retryDelay(i, policy));
    expect(delays[0]!).toBeLessThanOrEqual(10);
    expect(Math.max(...delays)).toBeLessThanOrEqual(80);
    expect(delays.slice(10).every((d) => d >= 40)).toBe(true);
  });
});
