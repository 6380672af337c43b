import { describe, expect, it } from 'vitest';
import { CompletionBatcher } from '../../src/runner/batch-complete.js';
import { ApiError, NetworkError } from '../../src/sdk/client.js';
import type { CompleteBatchBody, CompleteBody } from '../../src/protocol/schemas.js';

const body = (status: CompleteBody['status'] = 'succeeded'): CompleteBody => ({
  leaseToken: '00000000-0000-4000-8000-000000000001',
  status,
});

function fakes(
  reply: (
    items: CompleteBatchBody['items'],
  ) => Promise<{ items: { id: string; outcome: 'accepted' | 'lease-lost' | 'not-found' }[] }>,
  carrier?: () => boolean,
) {
  const batches: string[][] = [];
  const singles: string[] = [];
  const batcher = new CompletionBatcher({
    completeMany: async (items) => {
      batches.push(items.map((i) => i.id));
      return reply(items);
    },
    complete: async (id) => {
      singles.push(id);
      return {};
    },
    windowMs: 5,
    carryMs: 40,
    ...(carrier ? { carrier } : {}),
  });
  return { batcher, batches, singles };
}

describe('CompletionBatcher', () => {
  it('sends completions that arrive together as one batch and gives each caller its own outcome', async () => {
    const { batcher, batches, singles } = fakes(async (items) => ({
      items: items.map((i) => ({
        id: i.id,
        outcome: i.id === 'b' ? 'lease-lost' : i.id === 'c' ? 'not-found' : 'accepted',
      })),
    }));
    const results = await Promise.allSettled(['a', 'b', 'c'].map((id) => batcher.complete(id, body())));
    expect(batches).toEqual([['a', 'b', 'c']]);
    expect(singles).toEqual([]);
    expect(results[0]!.status).toBe('fulfilled');
    expect(((results[1] as PromiseRejectedResult).reason as ApiError).httpStatus).toBe(409);
    expect(((results[2] as PromiseRejectedResult).reason as ApiError).httpStatus).toBe(404);
  });

  it('sends a lone completion as a batch of one', async () => {
    const { batcher, batches, singles } = fakes(async (items) => ({
      items: items.map((i) => ({ id: i.id, outcome: 'accepted' as const })),
    }));
    await batcher.complete('only', body());
    expect(batches).toEqual([['only']]);
    expect(singles).toEqual([]);
  });

  it('keeps two reports about one session in separate requests', async () => {
    const { batcher, batches, singles } = fakes(async (items) => ({
      items: items.map((i) => ({ id: i.id, outcome: 'accepted' })),
    }));
    await Promise.all([
      batcher.complete('x', body()),
      batcher.complete('y', body()),
      batcher.complete('x', body('failed')),
    ]);
    expect([...batches.flat(), ...singles].sort()).toEqual(['x', 'x', 'y']);
    expect(batches.every((b) => new Set(b).size === b.length)).toBe(true);
  });

  it('falls back to one by one when the API refuses the whole batch, and rejects all on a network error', async () => {
    const refused = fakes(async () => {
      throw new ApiError(400, 'VALIDATION', 'body.items.1.result: too large');
    });
    await Promise.all(['a', 'b'].map((id) => refused.batcher.complete(id, body())));
    expect(refused.singles.sort()).toEqual(['a', 'b']);

    const down = fakes(async () => {
      throw new NetworkError('cannot reach the API', true, new Error('ECONNREFUSED'));
    });
    const results = await Promise.allSettled(['a', 'b'].map((id) => down.batcher.complete(id, body())));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(down.singles).toEqual([]);
  });

  it('hands waiting completions to a carrying claim and settles each from its answer', async () => {
    let woken = 0;
    const { batcher, batches, singles } = fakes(
      async () => ({ items: [] }),
      () => {
        woken++;
        return true;
      },
    );
    const results = Promise.allSettled(['a', 'b', 'c'].map((id) => batcher.complete(id, body())));
    expect(woken).toBe(3);
    expect(batcher.pending).toBe(3);
    const carried = batcher.take();
    expect(carried?.items.map((i) => i.id)).toEqual(['a', 'b', 'c']);
    expect(batcher.pending).toBe(0);
    expect(batcher.take()).toBeUndefined();
    carried?.settle([
      { id: 'a', outcome: 'accepted', status: 'succeeded' },
      { id: 'b', outcome: 'lease-lost' },
    ]);
    const settled = await results;
    expect(settled[0]!.status).toBe('fulfilled');
    expect(((settled[1] as PromiseRejectedResult).reason as ApiError).httpStatus).toBe(409);
    // An item the answer does not mention was not stored: never reported as accepted.
    expect(((settled[2] as PromiseRejectedResult).reason as ApiError).httpStatus).toBe(409);
    expect(batches).toEqual([]);
    expect(singles).toEqual([]);
  });

  it('sends completions on their own when no claim carries them within carryMs', async () => {
    const { batcher, batches } = fakes(
      async (items) => ({ items: items.map((i) => ({ id: i.id, outcome: 'accepted' as const })) }),
      () => true,
    );
    const t0 = Date.now();
    await batcher.complete('late', body());
    expect(Date.now() - t0).toBeGreaterThanOrEqual(35);
    expect(batches).toEqual([['late']]);
  });

  it('a carrying claim that fails passes the failure on: network errors reject, refusals go one by one', async () => {
    const { batcher, singles } = fakes(
      async () => ({ items: [] }),
      () => true,
    );
    const a = batcher.complete('a', body());
    batcher.take()?.fail(new NetworkError('cannot reach the API', true, new Error('ECONNRESET')));
    await expect(a).rejects.toBeInstanceOf(NetworkError);
    const b = batcher.complete('b', body());
    batcher.take()?.fail(new ApiError(413, 'PAYLOAD_TOO_LARGE', 'body too large'));
    await b;
    expect(singles).toEqual(['b']);
  });
});
