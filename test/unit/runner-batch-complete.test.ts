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

  it('sends a lone completion on its own', async () => {
    const { batcher, batches, singles } = fakes(async () => ({ items: [] }));
    await batcher.complete('only', body());
    expect(batches).toEqual([]);
    expect(singles).toEqual(['only']);
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
});
