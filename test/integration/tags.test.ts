import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORT_COLUMNS, type ExportedSession, type TagView } from '@session-framework/sdk';
import { TAG_COUNTS_SQL, cancelMatching } from '../../src/store/batches.js';
import { EXPORTS_AT_ONCE } from '../../src/server/routes/batches.js';
import { fireDueSchedules } from '../../src/store/schedules.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Batches over real HTTP and a real Postgres: tags at enqueue and on the list, a tag's counts, the
 * streamed export in JSON lines and CSV, the bulk cancel with a running session.
 */

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi('tags');
});
afterAll(async () => {
  await api.stop();
});

async function post(path: string, body: unknown) {
  const res = await request(`${api.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, never> };
}

async function get(path: string) {
  const res = await request(`${api.url}${path}`);
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

/** Sessions in the database, to see that a refused request changed nothing. */
async function sessionCount(): Promise<number> {
  const { rows } = await api.db.query<{ n: number }>('SELECT count(*)::integer AS n FROM sessions');
  return rows[0]!.n;
}

/** Ends a claimed session as a runner would. */
async function finish(runnerId: string, type: string, status: 'succeeded' | 'failed', result?: unknown) {
  const { sessions } = await api.runnerClient.claim(runnerId, { slots: 1, types: [type] });
  const s = sessions[0]!;
  await api.runnerClient.complete(s.id, {
    leaseToken: s.leaseToken,
    status,
    ...(result === undefined ? {} : { result }),
  });
  return s.id;
}

/** An RFC 4180 reader: quoted fields with doubled quotes, commas and line breaks inside, CRLF rows. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  if (field !== '' || row.length > 0) throw new Error(`CSV does not end with CRLF: ${JSON.stringify(field)}`);
  return rows;
}

describe('tags at enqueue and on the list', () => {
  it('stores tags on single and batch enqueues, answers them, and filters the list by tag', async () => {
    const one = await api.client.createSession({ type: 'tagged', tags: ['nightly', 'team:web'] });
    expect(one.tags).toEqual(['nightly', 'team:web']);
    const batch = await api.client.createSessions([
      { type: 'tagged', tags: ['nightly'] },
      { type: 'other', tags: ['nightly', 'run/42'] },
      { type: 'tagged' },
    ]);
    expect(batch.items.map((s) => s.tags)).toEqual([['nightly'], ['nightly', 'run/42'], []]);
    expect((await api.client.getSession(batch.items[2]!.id)).tags).toEqual([]);

    const nightly = await api.client.listSessions({ tag: 'nightly', fields: [] });
    expect(nightly.items.map((s) => s.id)).toEqual([batch.items[1]!.id, batch.items[0]!.id, one.id]);
    expect(nightly.items[0]!.tags).toEqual(['nightly', 'run/42']);
    // Combined with the other filters.
    const typed = await api.client.listSessions({ tag: 'nightly', type: 'tagged', fields: [] });
    expect(typed.items.map((s) => s.id)).toEqual([batch.items[0]!.id, one.id]);
    const paged = await api.client.listSessions({ tag: 'nightly', limit: 2, fields: [] });
    expect(paged.items).toHaveLength(2);
    const next = await api.client.listSessions({ tag: 'nightly', cursor: paged.nextCursor!, fields: [] });
    expect(next.items.map((s) => s.id)).toEqual([one.id]);
    expect((await api.client.listSessions({ tag: 'nobody', fields: [] })).items).toEqual([]);
  });

  it('refuses bad tags with 400 at the tag, and stores nothing', async () => {
    const before = await sessionCount();
    const cases: [unknown, string][] = [
      [{ type: 'x', tags: ['a', 'b', 'c', 'has space'] }, 'body.tags.3'],
      [{ type: 'x', tags: ['ok', ''] }, 'body.tags.1'],
      [{ type: 'x', tags: ['x'.repeat(65)] }, 'body.tags.0'],
      [{ type: 'x', tags: ['-leading'] }, 'body.tags.0'],
      [{ type: 'x', tags: Array.from({ length: 21 }, (_, i) => `t${i}`) }, 'body.tags'],
      [{ type: 'x', tags: ['same', 'same'] }, 'body.tags'],
      [{ type: 'x', tags: 'nightly' }, 'body.tags'],
    ];
    for (const [body, path] of cases) {
      const res = await post('/v1/sessions', body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'VALIDATION', path });
    }
    const batch = await post('/v1/sessions/batch', {
      sessions: [
        { type: 'x', tags: ['fine'] },
        { type: 'x', tags: ['fine', 'bad,comma'] },
      ],
    });
    expect(batch.status).toBe(400);
    expect(batch.body.error).toMatchObject({ path: 'body.sessions.1.tags.1' });
    expect((await get('/v1/sessions?tag=bad%20tag')).status).toBe(400);
    expect((await get(`/v1/tags/${'y'.repeat(65)}`)).status).toBe(400);
    expect(await sessionCount()).toBe(before);
  });

  it('64 characters and every allowed sign are accepted', async () => {
    const tags = ['x'.repeat(64), 'a.b_c:d/e=f@g+h-i', ...Array.from({ length: 18 }, (_, i) => `n${i}`)];
    const s = await api.client.createSession({ type: 'x', tags });
    expect(s.tags).toEqual(tags);
  });
});

describe('tags in a schedule', () => {
  it("a schedule's template carries tags to every session it fires", async () => {
    const s = await api.client.createSchedule({
      name: 'tagged-schedule',
      cron: '0 0 1 1 *',
      enabled: false,
      session: { type: 'scheduled-tagged', tags: ['from-schedule'] },
    });
    expect(s.session.tags).toEqual(['from-schedule']);
    const fireAt = new Date(Date.now() - 1000);
    await api.db.query('UPDATE schedules SET enabled = true, next_run_at = $2 WHERE id = $1', [s.id, fireAt]);
    const out = await fireDueSchedules(
      api.db,
      (row) =>
        row.id === s.id
          ? { fire: [fireAt], skipped: 0, nextRunAt: new Date(Date.now() + 3600_000) }
          : { fire: [], skipped: 0, nextRunAt: row.next_run_at },
      100,
    );
    expect(out.created.filter((c) => c.scheduleId === s.id)).toHaveLength(1);
    const made = await api.client.listSessions({ tag: 'from-schedule', fields: [] });
    expect(made.items).toHaveLength(1);
    expect(made.items[0]).toMatchObject({ scheduleId: s.id, tags: ['from-schedule'] });
    const bad = await post('/v1/schedules', {
      name: 'bad-tags',
      cron: '0 0 1 1 *',
      session: { type: 'x', tags: ['no spaces'] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ path: 'body.session.tags.0' });
    await api.client.deleteSchedule(s.id);
  });
});

describe('GET /v1/tags/:tag', () => {
  it('counts a tag by status, with its oldest and newest session and whether all are final', async () => {
    const tag = 'counted';
    await api.client.createSessions(
      Array.from({ length: 5 }, (_, i) => ({ type: i < 3 ? 'count-a' : 'count-b', tags: [tag] })),
    );
    const empty = await api.client.getTag('never-used');
    expect(empty).toMatchObject({ total: 0, finished: 0, done: false, oldestCreatedAt: null });
    expect(Object.values(empty.byStatus).every((n) => n === 0)).toBe(true);

    let view = await api.client.getTag(tag);
    expect(view).toMatchObject({ tag, total: 5, finished: 0, done: false });
    expect(view.byStatus).toEqual({ queued: 5, running: 0, succeeded: 0, failed: 0, error: 0, cancelled: 0 });
    expect(Date.parse(view.oldestCreatedAt!)).toBeLessThanOrEqual(Date.parse(view.newestCreatedAt!));

    await finish('count-runner', 'count-a', 'succeeded');
    await finish('count-runner', 'count-a', 'failed');
    const { sessions } = await api.runnerClient.claim('count-runner', { slots: 1, types: ['count-a'] });
    expect(sessions).toHaveLength(1);
    view = await api.client.getTag(tag);
    expect(view.byStatus).toMatchObject({ queued: 2, running: 1, succeeded: 1, failed: 1 });
    expect(view).toMatchObject({ total: 5, finished: 2, done: false });
    expect(view.lastFinishedAt).not.toBeNull();

    await api.client.cancelSessions({ tag, status: 'queued' });
    await api.runnerClient.complete(sessions[0]!.id, {
      leaseToken: sessions[0]!.leaseToken,
      status: 'succeeded',
    });
    view = await api.client.getTag(tag);
    expect(view).toMatchObject({ total: 5, finished: 5, done: true } satisfies Partial<TagView>);
    expect(view.byStatus).toMatchObject({ succeeded: 2, failed: 1, cancelled: 2 });
  });

  it('reads the tag through its index, not every session', async () => {
    // Enough untagged history that a scan would be the planner's last choice.
    await api.db.query(
      `INSERT INTO sessions (id, type, input) SELECT gen_random_uuid(), 'history', '{}' FROM generate_series(1, 20000)`,
    );
    await api.db.query('ANALYZE sessions');
    const { rows } = await api.db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${TAG_COUNTS_SQL}`, ['counted']);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toContain('sessions_tags_idx');
    expect(plan).not.toContain('Seq Scan');
  });
});

describe('POST /v1/sessions/cancel', () => {
  it('cancels queued sessions at once and asks running ones to stop, in one call; a repeat counts nothing', async () => {
    const tag = 'to-cancel';
    const made = await api.client.createSessions(
      Array.from({ length: 4 }, () => ({ type: 'cancel-me', tags: [tag] })),
    );
    const other = await api.client.createSession({ type: 'cancel-me', tags: ['keep'] });
    const doneId = await finish('cancel-runner', 'cancel-me', 'succeeded');
    const { sessions } = await api.runnerClient.claim('cancel-runner', { slots: 1, types: ['cancel-me'] });
    const running = sessions[0]!;
    expect(made.items.map((s) => s.id)).toContain(running.id);

    const out = await api.client.cancelSessions({ tag });
    expect(out).toEqual({ cancelled: 2, requested: 1 });
    const after = await Promise.all(made.items.map((s) => api.client.getSession(s.id)));
    const byId = new Map(after.map((s) => [s.id, s]));
    expect(byId.get(doneId)).toMatchObject({ status: 'succeeded', cancelRequested: false });
    expect(byId.get(running.id)).toMatchObject({ status: 'running', cancelRequested: true });
    const cancelled = after.filter((s) => s.status === 'cancelled');
    expect(cancelled).toHaveLength(2);
    for (const s of cancelled) expect(s).toMatchObject({ errorMessage: 'Cancelled while queued' });
    expect((await api.client.getSession(other.id)).status).toBe('queued');

    // The runner hears it at its next heartbeat, as for a single cancel.
    const hb = await api.runnerClient.heartbeat('cancel-runner', {
      activeSessions: 1,
      maxConcurrency: 1,
      sessions: [{ id: running.id, leaseToken: running.leaseToken }],
    });
    expect(hb.cancel).toEqual([running.id]);
    expect(await api.client.cancelSessions({ tag })).toEqual({ cancelled: 0, requested: 0 });
    await api.runnerClient.complete(running.id, { leaseToken: running.leaseToken, status: 'cancelled' });
    expect((await api.client.getTag(tag)).byStatus).toMatchObject({ succeeded: 1, cancelled: 3 });
  });

  it('picks by status, type and ids together; a session waiting on it is woken', async () => {
    const a = await api.client.createSession({ type: 'pick-a' });
    const b = await api.client.createSession({ type: 'pick-a' });
    const c = await api.client.createSession({ type: 'pick-b' });
    const waiting = api.client.waitSession(a.id, 20_000);
    const started = Date.now();
    expect(await api.client.cancelSessions({ type: 'pick-a', ids: [a.id, c.id] })).toEqual({
      cancelled: 1,
      requested: 0,
    });
    expect((await waiting).status).toBe('cancelled');
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await api.client.getSession(b.id)).status).toBe('queued');
    expect((await api.client.getSession(c.id)).status).toBe('queued');
    expect(await api.client.cancelSessions({ type: 'pick-b', status: 'running' })).toEqual({
      cancelled: 0,
      requested: 0,
    });
    expect((await api.client.getSession(c.id)).status).toBe('queued');
  });

  it('locks the running sessions it flags in id order, whatever order its plan reads them', async () => {
    const tag = 'cancel-order';
    await api.client.createSessions(
      Array.from({ length: 300 }, () => ({ type: 'cancel-order', tags: [tag] })),
    );
    const { sessions } = await api.runnerClient.claim('cancel-order-runner', {
      slots: 300,
      types: ['cancel-order'],
      maxConcurrency: 500,
    });
    expect(sessions).toHaveLength(300);
    const ids = sessions.map((s) => s.id).sort();
    // The table rewritten in descending id order: any scan of it (sequential or by bitmap) reads the
    // highest id first, so only an explicit order locks the lowest first.
    await api.db.query('CREATE INDEX sessions_id_desc_tmp ON sessions (id DESC)');
    await api.db.query('CLUSTER sessions USING sessions_id_desc_tmp');
    await api.db.query('DROP INDEX sessions_id_desc_tmp');
    const holder = await api.db.connect();
    const probe = await api.db.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [ids[ids.length - 1]]);
      const cancelling = cancelMatching(api.db, { tag });
      await waitFor(
        async () => {
          const { rows } = await probe.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> pg_backend_pid()`,
          );
          return rows[0]!.n > 0;
        },
        { timeoutMs: 5000, what: 'the cancel to wait for the held session' },
      );
      // While it waits for the highest id, it already holds the lowest.
      const lowest = await probe
        .query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE NOWAIT', [ids[0]])
        .then(
          () => 'free',
          (err: { code?: string }) => err.code,
        );
      expect(lowest).toBe('55P03');
      await holder.query('ROLLBACK');
      expect(await cancelling).toEqual({ cancelled: 0, requested: 300 });
    } finally {
      holder.release();
      probe.release();
    }
  });

  it('refuses a body that picks nothing or picks badly, and changes nothing', async () => {
    const s = await api.client.createSession({ type: 'refused-cancel' });
    const cases: [unknown, string][] = [
      [{}, 'body'],
      [{ status: 'succeeded' }, 'body.status'],
      [{ tag: 'bad tag' }, 'body.tag'],
      [{ ids: ['nope'] }, 'body.ids.0'],
      [{ ids: [] }, 'body.ids'],
      [{ type: 'refused-cancel', extra: 1 }, 'body.extra'],
    ];
    for (const [body, path] of cases) {
      const res = await post('/v1/sessions/cancel', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'VALIDATION', path });
    }
    expect((await api.client.getSession(s.id)).status).toBe('queued');
  });
});

describe('GET /v1/sessions/export', () => {
  const tricky = { text: 'a, "quoted" value\nwith a line break\r\nand more', n: 1.5, list: [1, 'two'] };

  it('exports JSON lines and CSV that parse back to the same sessions', async () => {
    const tag = 'exported';
    await api.client.createSessions([
      { type: 'export-x', tags: [tag, 'second'] },
      { type: 'export-x', tags: [tag] },
      { type: 'export-y', tags: [tag] },
    ]);
    const ok = await finish('export-runner', 'export-x', 'succeeded', tricky);
    const { sessions } = await api.runnerClient.claim('export-runner', { slots: 1, types: ['export-x'] });
    await api.runnerClient.complete(sessions[0]!.id, {
      leaseToken: sessions[0]!.leaseToken,
      status: 'failed',
      errorMessage: 'step 2 failed: "no, such" element\nat line 3',
    });

    const jsonl = await get(`/v1/sessions/export?tag=${tag}`);
    expect(jsonl.status).toBe(200);
    expect(jsonl.headers['content-type']).toContain('application/x-ndjson');
    expect(jsonl.text.endsWith('\n')).toBe(true);
    const lines = jsonl.text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as ExportedSession);
    expect(lines).toHaveLength(3);
    expect(lines.map((l) => l.id)).toEqual([...lines.map((l) => l.id)].sort());
    for (const l of lines) expect(Object.keys(l)).toEqual([...EXPORT_COLUMNS]);
    const byId = new Map(lines.map((l) => [l.id, l]));
    const stored = await api.client.getSession(ok);
    expect(byId.get(ok)).toEqual({
      id: ok,
      type: 'export-x',
      status: 'succeeded',
      tags: stored.tags,
      priority: 0,
      createdAt: stored.createdAt,
      runAt: stored.runAt,
      claimedAt: stored.claimedAt,
      finishedAt: stored.finishedAt,
      attempt: 1,
      maxAttempts: 1,
      claimedBy: 'export-runner',
      result: tricky,
      errorMessage: null,
    });
    expect(byId.get(sessions[0]!.id)).toMatchObject({
      status: 'failed',
      errorMessage: 'step 2 failed: "no, such" element\nat line 3',
    });

    const csv = await get(`/v1/sessions/export?format=csv&tag=${tag}`);
    expect(csv.status).toBe(200);
    expect(csv.headers['content-type']).toContain('text/csv');
    const [head, ...rows] = parseCsv(csv.text);
    expect(head).toEqual([...EXPORT_COLUMNS]);
    expect(rows).toHaveLength(3);
    // Each CSV row is the JSON line's values: tags joined by ;, the result as JSON text, null as empty.
    const RESULT = EXPORT_COLUMNS.indexOf('result');
    for (const [i, row] of rows.entries()) {
      const l = lines[i]!;
      // The result is Postgres' JSON text: compared as the value it is.
      const at = row.map((v, k) => (k === RESULT && v !== '' ? JSON.stringify(JSON.parse(v)) : v));
      expect(at).toEqual(
        EXPORT_COLUMNS.map((c) => {
          const v = l[c];
          if (v === null) return '';
          if (c === 'tags') return (v as string[]).join(';');
          if (c === 'result') return JSON.stringify(v);
          return typeof v === 'number' ? `${v}` : (v as string);
        }),
      );
    }
    const okRow = rows.find((r) => r[0] === ok)!;
    expect(JSON.parse(okRow[12]!)).toEqual(tricky);

    // The other filters, alone and together.
    const failed = await get(`/v1/sessions/export?tag=${tag}&status=failed`);
    expect(failed.text.trimEnd().split('\n')).toHaveLength(1);
    const typeY = await get(`/v1/sessions/export?type=export-y`);
    expect(JSON.parse(typeY.text) as ExportedSession).toMatchObject({ type: 'export-y', tags: [tag] });
    const future = await get(`/v1/sessions/export?tag=${tag}&since=2999-01-01T00:00:00Z`);
    expect(future.text).toBe('');
    const past = await get(`/v1/sessions/export?tag=${tag}&since=2000-01-01T00:00:00Z`);
    expect(past.text.trimEnd().split('\n')).toHaveLength(3);
  });

  it('refuses bad filters with 400 at the field', async () => {
    for (const [qs, path] of [
      ['format=xml', 'query.format'],
      ['status=done', 'query.status'],
      ['since=yesterday', 'query.since'],
      ['tag=a%20b', 'query.tag'],
      ['other=1', 'query.other'],
    ] as const) {
      const res = await get(`/v1/sessions/export?${qs}`);
      expect(res.status, qs).toBe(400);
      expect((JSON.parse(res.text) as { error: { path: string } }).error.path).toBe(path);
    }
  });

  /** The export's own backend (its transaction stays open while it streams) and when its last FETCH began. */
  async function exportBackends(): Promise<{ state: string; query: string; started: Date }[]> {
    const { rows } = await api.db.query<{ state: string; query: string; started: Date }>(
      `SELECT state, query, query_start AS started FROM pg_stat_activity
       WHERE datname = current_database() AND query LIKE 'FETCH % FROM sfw_export' AND pid <> pg_backend_pid()`,
    );
    return rows.filter((r) => r.state === 'idle in transaction' || r.state === 'active');
  }

  it('streams 10,000 sessions as the reader reads: FETCH by FETCH, with the cursor open between', async () => {
    const tag = 'export-10k';
    // About 40 MB of JSON lines: far more than the socket buffers hold, so a paused reader stops the FETCHes.
    const pad = 'z'.repeat(4000);
    await api.db.query(
      `INSERT INTO sessions (id, type, input, status, finished_at, result, tags)
       SELECT gen_random_uuid(), 'export-bulk', '{}', 'succeeded', now(), jsonb_build_object('i', g, 'pad', $2::text),
              ARRAY[$1::text]
       FROM generate_series(1, 10000) g`,
      [tag, pad],
    );
    const res = await request(`${api.url}/v1/sessions/export?tag=${tag}`);
    expect(res.statusCode).toBe(200);
    const it = res.body[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    // The reader pauses: once the socket buffers are full the server waits on it mid-export, its cursor
    // open, no new FETCH for as long as the reader does not read.
    const paused = await waitFor(
      async () => {
        const before = (await exportBackends())[0];
        await new Promise((r) => setTimeout(r, 300));
        const after = (await exportBackends())[0];
        return (
          before && after?.state === 'idle in transaction' && +after.started === +before.started && after
        );
      },
      { what: 'the export paused mid-stream' },
    );
    const parts = [first.value as Buffer];
    let bytes = parts[0]!.length;
    // Reading on makes the server FETCH on: a FETCH newer than the pause, the cursor still open. (An export
    // that read every row before answering would have no FETCH left to make.)
    while (bytes < 20_000_000) {
      const n = await it.next();
      if (n.done) throw new Error(`the export ended after ${bytes} bytes`);
      parts.push(n.value as Buffer);
      bytes += (n.value as Buffer).length;
    }
    const reading = (await exportBackends())[0];
    expect(reading?.query).toMatch(/^FETCH 500 FROM sfw_export/);
    expect(reading!.started.getTime()).toBeGreaterThan(paused.started.getTime());
    for (;;) {
      const n = await it.next();
      if (n.done) break;
      parts.push(n.value as Buffer);
    }
    expect(parts.length).toBeGreaterThan(100);
    const lines = Buffer.concat(parts).toString().trimEnd().split('\n');
    expect(lines).toHaveLength(10_000);
    const seen = new Set(lines.map((l) => (JSON.parse(l) as { result: { i: number } }).result.i));
    expect(seen.size).toBe(10_000);
    // Done: the transaction ended and its connection went back to the pool.
    await waitFor(async () => (await exportBackends()).length === 0, { what: 'the export closed' });
  });

  it('a reader that goes away ends the export: the cursor is closed', async () => {
    const ac = new AbortController();
    const res = await request(`${api.url}/v1/sessions/export?tag=export-10k`, { signal: ac.signal });
    const it = res.body[Symbol.asyncIterator]();
    await it.next();
    await waitFor(async () => (await exportBackends()).length === 1, { what: 'the export mid-stream' });
    ac.abort();
    await waitFor(async () => (await exportBackends()).length === 0, { what: 'the export closed' });
    // The API goes on answering, its pool whole.
    expect((await get('/v1/tags/export-10k')).status).toBe(200);
  });

  it(`streams at most ${EXPORTS_AT_ONCE} exports at once per replica; one more is 429 until one ends`, async () => {
    const open = await Promise.all(
      Array.from({ length: EXPORTS_AT_ONCE }, async () => {
        const ac = new AbortController();
        const res = await request(`${api.url}/v1/sessions/export?tag=export-10k`, { signal: ac.signal });
        expect(res.statusCode).toBe(200);
        return { ac, res };
      }),
    );
    const refused = await get('/v1/sessions/export?tag=export-10k');
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('5');
    expect(JSON.parse(refused.text)).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    // The rest of the API is served meanwhile.
    expect((await get('/v1/tags/export-10k')).status).toBe(200);
    open[0]!.ac.abort();
    await open[0]!.res.body.text().catch(() => {});
    await waitFor(async () => (await exportBackends()).length === EXPORTS_AT_ONCE - 1, {
      what: 'one export closed',
    });
    // Its place is free once its stream has closed.
    await waitFor(async () => (await get('/v1/sessions/export?tag=exported')).status === 200, {
      what: 'an export let through again',
    });
    for (const o of open.slice(1)) o.ac.abort();
    await waitFor(async () => (await exportBackends()).length === 0, { what: 'every export closed' });
  });

  it('the SDK reads the export as a stream', async () => {
    let text = '';
    for await (const c of api.client.exportSessions({ tag: 'exported', format: 'csv' })) text += c.toString();
    expect(parseCsv(text)).toHaveLength(4);
  });
});
