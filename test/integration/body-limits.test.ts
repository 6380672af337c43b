import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_JSON_KEYS, MAX_JSON_VALUES, jsonLimitProblem } from '../../src/server/limits.js';
import { startTestApi, type TestApi } from '../helpers/api.js';

/**
 * A hostile JSON body must not hold the event loop: a million keys took JSON.parse, the nesting walk and
 * the store's JSON.stringify 2.5 s, while /healthz and every runner waited. Such bodies are refused from
 * a scan of the text before parsing; the stall they cause is compared with a body of the same size that
 * is cheap to parse (no absolute times: the machine is shared).
 */

let api: TestApi;
const poller = new Agent({ connections: 1 });

beforeAll(async () => {
  api = await startTestApi('body_limits');
});
afterAll(async () => {
  await poller.close();
  await api.stop();
});

/** Sends `body` to POST /v1/sessions while polling /healthz; answers the status and the slowest poll. */
async function stallDuring(body: string): Promise<{ status: number; code: string; slowestMs: number }> {
  let done = false;
  let slowest = 0;
  const polling = (async () => {
    while (!done) {
      const t = performance.now();
      const res = await request(`${api.url}/healthz`, { dispatcher: poller });
      await res.body.text();
      slowest = Math.max(slowest, performance.now() - t);
    }
  })();
  // The poller runs before the body goes out.
  await new Promise((r) => setTimeout(r, 20));
  const res = await request(`${api.url}/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  const text = await res.body.text();
  done = true;
  await polling;
  return {
    status: res.statusCode,
    code: (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '',
    slowestMs: slowest,
  };
}

const keys = (n: number, from = 0) => {
  const parts: string[] = [];
  for (let i = from; i < from + n; i++) parts.push(`"key-${i}":${i}`);
  return `{${parts.join(',')}}`;
};

describe('bodies that are slow to parse', () => {
  it('refuses a million keys before parsing them; /healthz stalls no more than for a cheap body of that size', async () => {
    const million = `{"type":"probe","input":${keys(1_000_000)}}`;
    // A spread-out variant: a hundred objects of 10,000 keys (each object within the per-object limit).
    const spread = `{"type":"probe","input":[${Array.from({ length: 100 }, (_, j) => keys(10_000, j * 10_000)).join(',')}]}`;
    // The baseline: as many bytes in one string, parsed in a few milliseconds, then refused by the schema.
    const cheap = `{"type":"probe","input":"${'a'.repeat(million.length - 50)}","unknownField":1}`;
    expect(million.length).toBeGreaterThan(14_000_000);

    const baseline = await stallDuring(cheap);
    expect(baseline.status).toBe(400);
    const a = await stallDuring(million);
    const b = await stallDuring(spread);
    const again = await stallDuring(cheap);
    expect(a).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    expect(b).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    const base = Math.max(baseline.slowestMs, again.slowestMs);
    // Before the limits: ~2,500 ms against ~30 ms.
    expect(a.slowestMs, `baseline ${base.toFixed(1)} ms`).toBeLessThan(base * 4);
    expect(b.slowestMs, `baseline ${base.toFixed(1)} ms`).toBeLessThan(base * 4);
    const { rows } = await api.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sessions`);
    expect(rows[0]!.n).toBe(0);
  });

  it('takes what real bodies hold: a batch of 10,000 ten-step flows', () => {
    const flow = {
      type: 'flow',
      input: {
        steps: Array.from({ length: 10 }, (_, i) => ({ action: 'fill', selector: `#f${i}`, value: `v${i}` })),
      },
    };
    const batch = JSON.stringify({ sessions: Array.from({ length: 10_000 }, () => flow) });
    expect(jsonLimitProblem(batch)).toBeUndefined();
  });

  it('counts keys and values outside strings only, and names the limit', () => {
    expect(jsonLimitProblem(keys(MAX_JSON_KEYS))).toBeUndefined();
    expect(jsonLimitProblem(keys(MAX_JSON_KEYS + 1))?.message).toMatch(/more than 10000 keys/);
    const values = `[${'1,'.repeat(MAX_JSON_VALUES + 1)}1]`;
    expect(jsonLimitProblem(values)?.message).toMatch(/more than 500000 values/);
    // Colons, commas, brackets and escaped quotes inside strings are text.
    const tricky = JSON.stringify({ s: `${'a:b,c[{'.repeat(200_000)}\\"]}`, t: '\\' });
    expect(jsonLimitProblem(tricky)).toBeUndefined();
    expect(jsonLimitProblem('['.repeat(65) + ']'.repeat(65))?.message).toMatch(/nested more than 64/);
    expect(jsonLimitProblem('['.repeat(64) + ']'.repeat(64))).toBeUndefined();
    // Malformed text is the parser's to report.
    expect(jsonLimitProblem('{"a":"unterminated')).toBeUndefined();
  });
});
