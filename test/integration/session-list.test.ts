import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LIST_FIELD_MAX_BYTES,
  LIST_PAGE_MAX_BYTES,
  type SessionSummary,
} from '../../src/protocol/schemas.js';
import type { Queryable } from '../../src/store/db.js';
import { listSessionColumns, listSessions } from '../../src/store/sessions.js';
import { startTestApi, type TestApi } from '../helpers/api.js';

/** Lists answer summaries; `fields=` adds the big fields within a per-field and a per-page byte bound. */

let api: TestApi;
const BIG = 3 * 1024 * 1024;

beforeAll(async () => {
  api = await startTestApi('session_list', { maxBodyBytes: 8 * 1024 * 1024 });
  // Twelve sessions with 3 MB inputs (the probe used 30 MB: the same shape, a tenth of the bytes).
  for (let i = 0; i < 12; i++)
    await api.client.createSession({ type: 'big', input: { i, blob: `${i}`.padEnd(BIG, 'x') } });
});
afterAll(async () => {
  await api.stop();
});

async function list(query: string) {
  const res = await request(`${api.url}/v1/sessions${query}`);
  const text = await res.body.text();
  return { status: res.statusCode, bytes: Buffer.byteLength(text), body: JSON.parse(text) as never };
}

describe('GET /v1/sessions', () => {
  it('answers summaries by default: no input, result or attempts, a small answer', async () => {
    const res = await list('?type=big&limit=25');
    expect(res.status).toBe(200);
    const { items } = res.body as { items: SessionSummary[] };
    expect(items).toHaveLength(12);
    // 36 MB of inputs; a summary is well under 1 KB each.
    expect(res.bytes).toBeLessThan(12 * 1024);
    for (const s of items) {
      for (const big of ['input', 'result', 'attempts', 'artifacts']) expect(s, big).not.toHaveProperty(big);
      expect(s).toMatchObject({ type: 'big', status: 'queued', attempt: 0, maxAttempts: 1 });
    }
  });

  it('adds the fields asked for; one too big for a list is left out and named in truncated', async () => {
    const small = await api.client.createSession({ type: 'mixed', input: { small: true } });
    const large = await api.client.createSession({
      type: 'mixed',
      input: { blob: 'y'.repeat(LIST_FIELD_MAX_BYTES + 10) },
    });
    const res = await list('?type=mixed&fields=input,attempts,result');
    const items = (res.body as { items: SessionSummary[] }).items;
    const byId = new Map(items.map((s) => [s.id, s]));
    expect(byId.get(small.id)).toMatchObject({ input: { small: true }, attempts: [], result: null });
    expect(byId.get(small.id)).not.toHaveProperty('truncated');
    expect(byId.get(large.id)).toMatchObject({ attempts: [], result: null, truncated: ['input'] });
    expect(byId.get(large.id)).not.toHaveProperty('input');
    expect(res.bytes).toBeLessThan(8 * 1024);
    // The session itself still has it all.
    expect(((await api.client.getSession(large.id)).input as { blob: string }).blob).toHaveLength(
      LIST_FIELD_MAX_BYTES + 10,
    );
  });

  it('cuts the summary error message and gives it whole on request', async () => {
    const s = await api.client.createSession({ type: 'errs' });
    const { sessions } = await api.client.claim('list-runner', { slots: 1, types: ['errs'] });
    await api.client.complete(s.id, {
      leaseToken: sessions[0]!.leaseToken,
      status: 'failed',
      errorMessage: 'E'.repeat(5000),
    });
    const summary = (await list('?type=errs')).body as { items: SessionSummary[] };
    expect(summary.items[0]!.errorMessage).toBe(`${'E'.repeat(199)}…`);
    const whole = (await list('?type=errs&fields=errorMessage')).body as { items: SessionSummary[] };
    expect(whole.items[0]!.errorMessage).toBe('E'.repeat(5000));
  });

  it('ends a page early at the byte budget and the cursor brings the rest, without gaps or repeats', async () => {
    const each = 60 * 1024;
    const n = Math.ceil(LIST_PAGE_MAX_BYTES / each) + 20;
    await api.client.createSessions(
      Array.from({ length: n }, (_, i) => ({ type: 'budget', input: { i, pad: 'z'.repeat(each) } })),
    );
    const seen: number[] = [];
    const sizes: number[] = [];
    let cursor = '';
    for (let page = 0; page < 10; page++) {
      const res = await list(`?type=budget&limit=1000&fields=input${cursor ? `&cursor=${cursor}` : ''}`);
      const body = res.body as { items: SessionSummary[]; nextCursor: string | null };
      sizes.push(res.bytes);
      seen.push(...body.items.map((s) => (s.input as { i: number }).i));
      if (!body.nextCursor) break;
      cursor = body.nextCursor;
    }
    expect(sizes.length).toBeGreaterThan(1);
    expect(Math.max(...sizes)).toBeLessThan(LIST_PAGE_MAX_BYTES + each + 64 * 1024);
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => n - 1 - i));
  });

  it('refuses an unknown field with 400 and the path of the parameter', async () => {
    for (const q of [
      '?fields=input,secret',
      '?fields=lease_token',
      '?fields=*',
      `?fields=${'a'.repeat(300)}`,
    ]) {
      const res = await list(q);
      expect(res.status, q).toBe(400);
      expect(res.body, q).toMatchObject({ error: { code: 'VALIDATION', path: 'query.fields' } });
    }
    expect((await list('?fields=')).status).toBe(200);
    expect((await list('?fields=input,input')).status).toBe(200);
  });

  it('describes the summaries and fields in the OpenAPI document', async () => {
    const res = await request(`${api.url}/openapi.json`);
    const doc = (await res.body.json()) as {
      paths: Record<
        string,
        Record<string, { parameters: { name: string }[]; responses: Record<string, unknown> }>
      >;
    };
    const op = doc.paths['/v1/sessions']!.get!;
    expect(op.parameters.map((p) => p.name)).toContain('fields');
    const item = (
      op.responses['200'] as {
        content: {
          'application/json': { schema: { properties: { items: { items: { required: string[] } } } } };
        };
      }
    ).content['application/json'].schema.properties.items.items;
    expect(item.required).toContain('id');
    expect(item.required).not.toContain('input');
    expect(item.required).not.toContain('result');
  });

  it('serves the SDK: summaries with fields: [], every field by default', async () => {
    const summaries = await api.client.listSessions({ type: 'big', fields: [] });
    expect(summaries.items[0]).not.toHaveProperty('input');
    const page = await api.client.listSessions({ type: 'mixed' });
    expect(page.items.find((s) => !s.truncated)?.input).toEqual({ small: true });
  });
});

describe('the list queries', () => {
  /** Runs every statement a list sends under EXPLAIN VERBOSE and answers the columns its scans read. */
  async function columnsRead(run: (db: Queryable) => Promise<unknown>): Promise<string[]> {
    const statements: { sql: string; params: unknown[] }[] = [];
    const spy = {
      query: (sql: string, params?: unknown[]) => {
        statements.push({ sql, params: params ?? [] });
        return api.db.query(sql, params);
      },
    } as unknown as Queryable;
    await run(spy);
    const out = new Set<string>();
    for (const s of statements) {
      const { rows } = await api.db.query<{ 'QUERY PLAN': unknown }>(
        `EXPLAIN (VERBOSE, FORMAT JSON) ${s.sql}`,
        s.params,
      );
      const walk = (node: unknown): void => {
        if (!node || typeof node !== 'object') return;
        const n = node as { 'Relation Name'?: string; Output?: string[]; Plans?: unknown[] };
        if (n['Relation Name'] === 'sessions') for (const o of n.Output ?? []) out.add(o);
        for (const child of n.Plans ?? []) walk(child);
      };
      walk((rows[0]!['QUERY PLAN'] as { Plan: unknown }[])[0]!.Plan);
    }
    return [...out];
  }

  it('reads none of the big columns for a summary page', async () => {
    const read = await columnsRead((db) => listSessions(db, { limit: 25, type: 'big', errorChars: 200 }));
    expect(read.length).toBeGreaterThan(5);
    for (const col of ['input', 'result', 'attempts', 'artifacts'])
      expect(
        read.filter((o) => new RegExp(`\\b${col}\\b`).test(o)),
        col,
      ).toEqual([]);
  });

  it('leaves out a value over the bound however well it compresses', async () => {
    const { rows } = await listSessions(api.db, { limit: 12, type: 'big', errorChars: 200 });
    const ids = rows.map((r) => r.id);
    const out = await listSessionColumns(api.db, ids, ['input'], {
      maxFieldBytes: 1024,
      maxPageBytes: 1 << 20,
    });
    expect(out.kept).toBe(12);
    for (const id of ids) expect(out.rows.get(id)).toEqual({ values: {}, cut: ['input'] });
  });
});
