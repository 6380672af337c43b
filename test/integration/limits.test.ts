import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.js';
import { deleteLimit, getLimit, putLimit, recordBackoff } from '../../src/store/limits.js';
import {
  cancelSession,
  completeSessions,
  exchange,
  insertSessions,
  reapSessions,
  requeueSessions,
  type NewSession,
} from '../../src/store/sessions.js';
import type { ClaimedSession, CompleteItem } from '../../src/protocol/schemas.js';
import { freshDb } from '../helpers/db.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';

// Per-key limits at the store, where every runner's claim meets them: sfw_claim_many under many
// concurrent claimers (each claim its own transaction), the parking of a full key's sessions and their
// release on every path that ends a running session.

let db: Db;
beforeAll(async () => {
  ({ db } = await freshDb('limits'));
});
afterAll(async () => {
  await db.end();
});

const LEASE_MS = 30_000;

function enqueue(type: string, n: number, extra: Partial<NewSession> = {}) {
  return insertSessions(
    db,
    Array.from({ length: n }, () => ({ type, ...extra })),
  );
}

async function claim(runnerId: string, type: string, slots: number, done: CompleteItem[] = []) {
  const out = await exchange(
    db,
    { runnerId, types: [type], slots, maxConcurrency: 1000, leaseMs: LEASE_MS },
    done,
  );
  return out.claimed();
}

const succeeded = (s: ClaimedSession): CompleteItem => ({
  id: s.id,
  leaseToken: s.leaseToken,
  status: 'succeeded',
});

async function count(sql: string, params: unknown[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>(sql, params);
  return rows[0]!.n;
}
const runningOf = (key: string) =>
  count(`SELECT count(*)::int AS n FROM sessions WHERE concurrency_key = $1 AND status = 'running'`, [key]);
const heldOf = (key: string) =>
  count('SELECT count(*)::int AS n FROM session_held WHERE concurrency_key = $1', [key]);

/**
 * Eight claimers racing over one type: each loops completing what it holds and claiming more in one
 * transaction (as runners do), until nothing of the type is left. Calls `sample` after every claim.
 */
async function race(type: string, opts: { until: () => Promise<boolean>; sample?: () => Promise<void> }) {
  await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      let held: ClaimedSession[] = [];
      for (let round = 0; round < 2000; round++) {
        held = await claim(`${type}-r${i}`, type, 3, held.map(succeeded));
        await opts.sample?.();
        if (held.length === 0 && (await opts.until())) return;
      }
      throw new Error(`claimer ${i} never saw the end of ${type}`);
    }),
  );
}

describe('per-key limits', () => {
  it('never runs more than `concurrency` sessions of a key under 8 racing claimers, and the others run meanwhile', async () => {
    await putLimit(db, 'conc.example', { concurrency: 3 });
    // The limited key's sessions come first in FIFO order: a claim that waited on them would starve the rest.
    await enqueue('race-c', 120, { concurrencyKey: 'conc.example' });
    await enqueue('race-c', 120, { concurrencyKey: 'free.example' });
    await enqueue('race-c', 120);
    let most = 0;
    await race('race-c', {
      until: async () =>
        (await count(
          `SELECT count(*)::int AS n FROM sessions WHERE type = 'race-c' AND status <> 'succeeded'`,
          [],
        )) === 0,
      sample: async () => {
        most = Math.max(most, await runningOf('conc.example'));
      },
    });
    expect(most).toBe(3);
    // Exactly, from the sessions' own times: a claim's time is taken after it counted the running sessions,
    // so no two intervals of [claimedAt, finishedAt) overlap more than the limit allows.
    const { rows } = await db.query<{ t: Date; d: number }>(
      `SELECT claimed_at AS t, 1 AS d FROM sessions WHERE concurrency_key = 'conc.example'
       UNION ALL SELECT finished_at, -1 FROM sessions WHERE concurrency_key = 'conc.example'
       ORDER BY 1, 2`,
    );
    let now = 0;
    let peak = 0;
    for (const r of rows) peak = Math.max(peak, (now += r.d));
    expect(rows).toHaveLength(240);
    expect(peak).toBe(3);
    // 8 claimers of 3 slots: with the key full, the other 21 slots go to the other sessions, which are all
    // done while most of the limited key's are still to run, though those were enqueued first.
    const limitedBefore = await count(
      `SELECT count(*)::int AS n FROM sessions WHERE concurrency_key = 'conc.example'
       AND finished_at < (SELECT max(finished_at) FROM sessions WHERE type = 'race-c' AND concurrency_key IS DISTINCT FROM 'conc.example')`,
      [],
    );
    expect(limitedBefore).toBeLessThan(60);
    expect((await getLimit(db, 'conc.example')).waiting).toBe(0);
  });

  it('8 claims at the same instant, each with room for the whole limit, take no more than the limit together', async () => {
    await putLimit(db, 'burst.example', { concurrency: 4, perMinute: 1000 });
    for (let round = 0; round < 5; round++) {
      await enqueue('burst', 40, { concurrencyKey: 'burst.example' });
      // Each claimer on its own connection, all started together, each asking for more than the limit.
      const clients = await Promise.all(Array.from({ length: 8 }, () => db.connect()));
      try {
        const got = await Promise.all(
          clients.map((c, i) =>
            exchange(c, {
              runnerId: `burst-${i}`,
              types: ['burst'],
              slots: 4,
              maxConcurrency: 100,
              leaseMs: LEASE_MS,
            }),
          ),
        );
        const claimed = got.flatMap((g) => g.claimed());
        expect(claimed.length, `round ${round}`).toBeLessThanOrEqual(4);
        expect(await runningOf('burst.example')).toBe(claimed.length);
        await completeSessions(db, claimed.map(succeeded));
        await db.query(
          `UPDATE sessions SET status = 'cancelled', finished_at = now() WHERE type = 'burst' AND status = 'queued'`,
        );
      } finally {
        for (const c of clients) c.release();
      }
    }
    // The window's count saw every claim (no claim overwrote another's).
    const claims = await count(
      `SELECT count(*)::int AS n FROM sessions WHERE type = 'burst' AND claimed_at IS NOT NULL`,
      [],
    );
    expect((await getLimit(db, 'burst.example')).claimed_last_minute).toBe(claims);
  });

  it('claims no more than `perMinute` of a key in any window under 8 racing claimers, and more once the window moves on', async () => {
    // A 2-second window instead of the minute, in this test's own database.
    await db.query(
      `CREATE OR REPLACE FUNCTION sfw_limit_window() RETURNS interval LANGUAGE sql STABLE AS $$ SELECT interval '2 seconds' $$`,
    );
    try {
      await putLimit(db, 'rate.example', { perMinute: 5 });
      await enqueue('race-r', 17, { concurrencyKey: 'rate.example' });
      await enqueue('race-r', 60);
      const started = Date.now();
      await race('race-r', {
        until: async () =>
          (await count(
            `SELECT count(*)::int AS n FROM sessions WHERE type = 'race-r' AND status <> 'succeeded'`,
            [],
          )) === 0,
      });
      const { rows } = await db.query<{ t: Date }>(
        `SELECT claimed_at AS t FROM sessions WHERE concurrency_key = 'rate.example' ORDER BY claimed_at`,
      );
      const times = rows.map((r) => r.t.getTime());
      expect(times).toHaveLength(17);
      for (let i = 0; i < times.length; i++) {
        const inWindow = times.filter((t) => t >= times[i]! && t < times[i]! + 2000).length;
        expect(inWindow, `claims within 2 s from claim ${i}`).toBeLessThanOrEqual(5);
      }
      // 17 at 5 per window: the fourth window's claims start after 6 s (and the held sessions were let go).
      expect(Date.now() - started).toBeGreaterThan(6000);
      expect(times[16]! - times[0]!).toBeLessThan(12_000);
    } finally {
      await db.query(
        `CREATE OR REPLACE FUNCTION sfw_limit_window() RETURNS interval LANGUAGE sql STABLE AS $$ SELECT interval '60 seconds' $$`,
      );
    }
  }, 60_000);

  it('parks a full key: its sessions leave the ready table and later claims do not read them', async () => {
    await putLimit(db, 'park.example', { concurrency: 1 });
    await enqueue('park', 3000, { concurrencyKey: 'park.example' });
    await enqueue('park', 10);
    const first = await claim('park-1', 'park', 10);
    // One of the key, nine others: the full key's sessions did not hold up the rest.
    expect(first.length).toBe(10);
    expect(await runningOf('park.example')).toBe(1);
    // The rest parked in claim order (up to 5,000 a round), so the next claim reads none of them.
    expect(await heldOf('park.example')).toBe(2999);
    const second = await claim('park-2', 'park', 10);
    expect(second.length).toBe(1);
    expect(await count(`SELECT count(*)::int AS n FROM session_ready WHERE type = 'park'`, [])).toBe(0);
    expect((await getLimit(db, 'park.example')).waiting).toBe(2999);
    // Deleting the limit lets every held session go at once.
    await deleteLimit(db, 'park.example');
    expect(await heldOf('park.example')).toBe(0);
    expect((await claim('park-3', 'park', 100)).length).toBe(100);
  });

  /**
   * One running session of a key with concurrency 1 and one held behind it; `end` stops the running one by
   * one of the paths out of `running`. The held one must be claimable right after, by the release of the
   * queue trigger (the periodic look is moved an hour away, so it cannot be what let it go).
   */
  async function releasedBy(key: string, end: (running: ClaimedSession) => Promise<void>, retry = false) {
    await putLimit(db, key, { concurrency: 1 });
    await enqueue(key, 1, { concurrencyKey: key, maxAttempts: retry ? 2 : 1, retryOn: ['failed'] });
    await enqueue(key, 1, { concurrencyKey: key });
    const [run, ...none] = await claim(`${key}-a`, key, 5);
    expect(none).toHaveLength(0);
    expect(await heldOf(key)).toBe(1);
    await db.query(`UPDATE limits SET release_at = now() + interval '1 hour' WHERE key = $1`, [key]);
    expect(await claim(`${key}-b`, key, 5)).toHaveLength(0);
    await end(run!);
    expect(await heldOf(key)).toBe(0);
    const next = await claim(`${key}-c`, key, 5);
    expect(next).toHaveLength(1);
    expect(await runningOf(key)).toBe(1);
    return { run: run!, next: next[0]! };
  }

  it('lets a held session go when the running one completes', async () => {
    const { run, next } = await releasedBy('end.complete', async (s) => {
      const [out] = await completeSessions(db, [succeeded(s)]);
      expect(out?.outcome).toBe('accepted');
    });
    expect(next.id).not.toBe(run.id);
  });

  it('lets a held session go when the running one fails and is queued for a retry', async () => {
    const { run, next } = await releasedBy(
      'end.retry',
      async (s) => {
        await completeSessions(db, [
          { id: s.id, leaseToken: s.leaseToken, status: 'failed', errorMessage: 'x' },
        ]);
        const { rows } = await db.query<{ status: string }>('SELECT status FROM sessions WHERE id = $1', [
          s.id,
        ]);
        expect(rows[0]!.status).toBe('queued');
      },
      true,
    );
    expect(next.id).not.toBe(run.id);
  });

  it('lets a held session go when the reaper recovers the running one', async () => {
    await releasedBy('end.reaper', async (s) => {
      // A confirmed claim whose lease lapsed: its runner is lost.
      await db.query(
        `UPDATE sessions SET lease_expires_at = now() - interval '1 s', confirmed_at = now() WHERE id = $1`,
        [s.id],
      );
      const out = await reapSessions(db, 0);
      expect(out?.errored).toBe(1);
    });
  });

  it('lets a held session go when the running one is cancelled', async () => {
    await releasedBy('end.cancel', async (s) => {
      await cancelSession(db, s.id);
      const [out] = await completeSessions(db, [{ id: s.id, leaseToken: s.leaseToken, status: 'cancelled' }]);
      expect(out?.outcome).toBe('accepted');
    });
  });

  it('lets a held session go when the runner hands the running one back', async () => {
    await releasedBy('end.handback', async (s) => {
      expect(await requeueSessions(db, 'end.handback-a', [{ id: s.id, leaseToken: s.leaseToken }])).toEqual([
        s.id,
      ]);
    });
  });

  it('a held session cancelled while queued leaves the held set', async () => {
    await putLimit(db, 'held.cancel', { concurrency: 1 });
    await enqueue('held-cancel', 2, { concurrencyKey: 'held.cancel' });
    await claim('hc', 'held-cancel', 5);
    const { rows } = await db.query<{ id: string }>(
      `SELECT id FROM session_held WHERE concurrency_key = 'held.cancel'`,
    );
    expect(rows).toHaveLength(1);
    await cancelSession(db, rows[0]!.id);
    expect(await heldOf('held.cancel')).toBe(0);
  });

  it('a raised limit lets held sessions run at the next claim', async () => {
    await putLimit(db, 'raise.example', { concurrency: 1 });
    await enqueue('raise', 5, { concurrencyKey: 'raise.example' });
    expect(await claim('raise-1', 'raise', 10)).toHaveLength(1);
    expect(await heldOf('raise.example')).toBe(4);
    await putLimit(db, 'raise.example', { concurrency: 3 });
    expect(await claim('raise-2', 'raise', 10)).toHaveLength(2);
    expect(await runningOf('raise.example')).toBe(3);
    expect(await heldOf('raise.example')).toBe(2);
  });

  it('counts the sessions of a key running before its limit was set', async () => {
    await enqueue('before', 4, { concurrencyKey: 'before.example' });
    expect(await claim('before-1', 'before', 2)).toHaveLength(2);
    await putLimit(db, 'before.example', { concurrency: 2 });
    expect(await claim('before-2', 'before', 10)).toHaveLength(0);
    expect((await getLimit(db, 'before.example')).running).toBe(2);
  });
});

describe('/v1/limits and concurrencyKey over HTTP', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi('limits-api');
  });
  afterAll(async () => {
    await api.stop();
  });

  it('sets, lists, reads and deletes a limit with its live numbers, and /metrics shows them', async () => {
    const set = await api.client.putLimit('shop.example:8443', { concurrency: 1, perMinute: 30 });
    expect(set).toMatchObject({
      key: 'shop.example:8443',
      concurrency: 1,
      perMinute: 30,
      running: 0,
      waiting: 0,
    });
    await api.client.createSessions(
      Array.from({ length: 3 }, () => ({ type: 'shop', concurrencyKey: 'shop.example:8443' })),
    );
    const { sessions } = await api.runnerClient.claim('lim-r1', {
      slots: 3,
      types: ['shop'],
      maxConcurrency: 3,
    });
    expect(sessions).toHaveLength(1);
    const got = await api.client.getLimit('shop.example:8443');
    expect(got).toMatchObject({ running: 1, waiting: 2, claimedLastMinute: 1 });
    expect(got.releaseAt).not.toBeNull();
    expect((await api.client.listLimits()).items.map((l) => l.key)).toEqual(['shop.example:8443']);

    const text = await api.client.metrics();
    const check = spawnSync('promtool', ['check', 'metrics'], {
      input: text,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(`${check.stdout}${check.stderr}`).toBe('');
    expect(text).toContain('sfw_limit_running{key="shop.example:8443"} 1');
    expect(text).toContain('sfw_limit_waiting{key="shop.example:8443"} 2');
    // A key without a limit has no series.
    await api.client.createSession({ type: 'shop', concurrencyKey: 'unlimited.example' });
    expect(await api.client.metrics()).not.toContain('unlimited.example');

    // Replacing the limit: a field left out is no bound.
    expect(await api.client.putLimit('shop.example:8443', { perMinute: 10 })).toMatchObject({
      concurrency: null,
      perMinute: 10,
    });
    const deleted = await api.client.deleteLimit('shop.example:8443');
    expect(deleted.key).toBe('shop.example:8443');
    await expect(api.client.getLimit('shop.example:8443')).rejects.toMatchObject({ status: 404 });
    const again = await api.runnerClient.claim('lim-r1', { slots: 5, types: ['shop'], maxConcurrency: 5 });
    // The held two and the unlimited one.
    expect(again.sessions).toHaveLength(3);
  });

  it('refuses bad limits and keys with 400 and the path, changing nothing', async () => {
    const put = (key: string, body: unknown) =>
      fetch(`${api.url}/v1/limits/${encodeURIComponent(key)}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const cases: [string, unknown, string][] = [
      ['a.example', {}, 'body'],
      ['a.example', { concurrency: 0 }, 'body.concurrency'],
      ['a.example', { perMinute: 1.5 }, 'body.perMinute'],
      ['a.example', { concurrency: 2, burst: 3 }, 'body'],
      ['x'.repeat(201), { concurrency: 1 }, 'params.key'],
    ];
    for (const [key, body, path] of cases) {
      const res = await put(key, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const err = (await res.json()) as { error: { path?: string; message: string } };
      expect(err.error.path ?? err.error.message, JSON.stringify(body)).toContain(path);
    }
    expect((await api.client.listLimits()).items).toEqual([]);
    const res = await fetch(`${api.url}/v1/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'shop', concurrencyKey: '' }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { path?: string } }).error.path).toBe('body.concurrencyKey');
  });

  it('keys a flow by the host of its first goto, placeholders filled from its input, unless it names one', async () => {
    const flow = (input: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      api.client.createSession({ type: 'flow', input, ...extra });
    const plain = await flow({
      steps: [
        { action: 'waitFor', ms: 1 },
        { action: 'goto', url: 'https://a.example/x' },
      ],
    });
    expect(plain.concurrencyKey).toBe('a.example');
    const filled = await flow({
      steps: [{ action: 'goto', url: '{{input.base}}/login' }],
      input: { base: 'http://b.example:8080' },
    });
    expect(filled.concurrencyKey).toBe('b.example:8080');
    const named = await flow(
      { steps: [{ action: 'goto', url: 'https://a.example/' }] },
      { concurrencyKey: 'mine' },
    );
    expect(named.concurrencyKey).toBe('mine');
    const none = await flow({ steps: [{ action: 'waitFor', ms: 1 }] });
    expect(none.concurrencyKey).toBeNull();
    expect((await api.client.getSession(plain.id)).concurrencyKey).toBe('a.example');
    const listed = await api.client.listSessions({ type: 'flow' });
    expect(listed.items.map((s) => s.concurrencyKey).sort()).toEqual(
      [null, 'a.example', 'b.example:8080', 'mine'].sort(),
    );
  });
});

describe("a site's Retry-After", () => {
  it('holds every session of the key until then, fenced by the lease, and the key row goes once it is over', async () => {
    await enqueue('site', 1, { concurrencyKey: 'busy.example' });
    const [first] = await claim('site-1', 'site', 1);
    const ref = { sessionId: first!.id, runnerId: 'site-1', leaseToken: first!.leaseToken };
    // A stale holder is refused and changes nothing.
    await expect(
      recordBackoff(db, { ...ref, leaseToken: '00000000-0000-4000-8000-000000000000' }, 60_000),
    ).rejects.toMatchObject({ code: 'LEASE_LOST' });
    expect(await count(`SELECT count(*)::int AS n FROM limits WHERE key = 'busy.example'`, [])).toBe(0);

    const out = await recordBackoff(db, ref, 1500);
    expect(out.key).toBe('busy.example');
    const until = out.backoffUntil!.getTime();
    // A shorter one later does not shorten it.
    expect((await recordBackoff(db, ref, 100)).backoffUntil!.getTime()).toBe(until);
    expect((await getLimit(db, 'busy.example')).backoff_until?.getTime()).toBe(until);
    await enqueue('site', 3, { concurrencyKey: 'busy.example' });
    await enqueue('site', 2, { concurrencyKey: 'calm.example' });
    // Other keys go on; none of the key's sessions is claimed before the time.
    const during = await claim('site-2', 'site', 10);
    expect(during.map((c) => c.id)).toHaveLength(2);
    expect(await heldOf('busy.example')).toBe(3);
    const { rows } = await db.query<{ now: Date }>('SELECT now() AS now');
    expect(rows[0]!.now.getTime()).toBeLessThan(until);
    const after = await waitFor(
      async () => {
        const got = await claim('site-3', 'site', 10);
        return got.length > 0 && got;
      },
      { what: 'the key claimed again', timeoutMs: 10_000, intervalMs: 100 },
    );
    const { rows: at } = await db.query<{ t: Date }>(
      `SELECT min(claimed_at) AS t FROM sessions WHERE concurrency_key = 'busy.example' AND id <> $1`,
      [first!.id],
    );
    expect(at[0]!.t.getTime()).toBeGreaterThanOrEqual(until);
    expect(after.length + (await claim('site-3', 'site', 10)).length).toBe(3);
    // A row kept for the backoff alone goes at the next look once nothing waits.
    await completeSessions(db, [succeeded(first!)]);
    await db.query(`UPDATE limits SET release_at = now() WHERE key = 'busy.example'`);
    await claim('site-4', 'site', 1);
    expect(await count(`SELECT count(*)::int AS n FROM limits WHERE key = 'busy.example'`, [])).toBe(0);
  });

  it('of a limited key keeps the limit and shows in the limit', async () => {
    await putLimit(db, 'both.example', { concurrency: 5 });
    await enqueue('both', 1, { concurrencyKey: 'both.example' });
    const [s] = await claim('both-1', 'both', 1);
    await recordBackoff(db, { sessionId: s!.id, runnerId: 'both-1', leaseToken: s!.leaseToken }, 30_000);
    const l = await getLimit(db, 'both.example');
    expect(l.concurrency).toBe(5);
    expect(l.backoff_until).not.toBeNull();
    await enqueue('both', 2, { concurrencyKey: 'both.example' });
    expect(await claim('both-2', 'both', 5)).toHaveLength(0);
    // Deleting the limit drops the backoff with it.
    await deleteLimit(db, 'both.example');
    expect(await claim('both-2', 'both', 5)).toHaveLength(2);
  });
});
