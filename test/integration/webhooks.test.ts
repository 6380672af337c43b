import { execFile, spawnSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  ApiError,
  verifyWebhook,
  WebhookVerificationError,
  type SfwClient,
  type WebhookEvent,
  type WebhookView,
} from '@session-framework/sdk';
import { parseTargetPolicy } from '../../src/protocol/targets.js';
import type { WebhookOptions } from '../../src/server/webhooks.js';
import { postWebhook } from '../../src/server/webhook-http.js';
import { reapSessions } from '../../src/store/sessions.js';
import { claimDeliveries, recordDelivery } from '../../src/store/webhooks.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { freshDb } from '../helpers/db.js';
import { pgbouncerBinary, startPgBouncer } from '../helpers/pgbouncer.js';
import { createDb } from '../../src/store/db.js';
import { ensureDatabase } from '../../src/store/embedded.js';
import { migrate } from '../../src/store/migrate.js';
import { freePort } from '../helpers/ports.js';
import { requireChromium } from '../helpers/chromium.js';
import { waitFor } from '../helpers/wait.js';

/** Short backoff and retry window so retries and expiry happen within a test. */
const WEBHOOKS: WebhookOptions = {
  policy: parseTargetPolicy({}),
  retryMs: 5000,
  backoffMs: 100,
  maxBackoffMs: 800,
  timeoutMs: 2000,
  concurrency: 8,
  pollMs: 200,
};

interface Received {
  id: string;
  body: string;
  event: WebhookEvent | null;
  verified: boolean;
  error: string | null;
}

/**
 * A receiver on 127.0.0.1 that verifies each delivery with the SDK and answers `status(n)` to the n-th
 * (0: no answer at all).
 */
class Receiver {
  readonly got: Received[] = [];
  private server: http.Server | null = null;
  port = 0;
  secret = '';

  constructor(private readonly status: (n: number) => number = () => 200) {}

  async listen(port = 0): Promise<this> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const rec: Received = {
          id: String(req.headers['webhook-id']),
          body,
          event: null,
          verified: false,
          error: null,
        };
        try {
          rec.event = verifyWebhook({ payload: body, headers: req.headers, secret: this.secret });
          rec.verified = true;
        } catch (err) {
          rec.error = (err as Error).message;
        }
        this.got.push(rec);
        const status = rec.verified ? this.status(this.got.length) : 401;
        // 0: never answer (a receiver that hangs).
        if (status === 0) return;
        res.statusCode = status;
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  of(sessionId: string) {
    return this.got.filter((r) => r.event?.data.id === sessionId);
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  }
}

let api: TestApi;
const receivers: Receiver[] = [];

beforeAll(async () => {
  api = await startTestApi('webhooks', { deps: { webhooks: WEBHOOKS } });
});
afterAll(async () => {
  await api.stop();
  for (const r of receivers) await r.close();
});

async function receiver(status?: (n: number) => number, port?: number): Promise<Receiver> {
  const r = await new Receiver(status).listen(port);
  receivers.push(r);
  return r;
}

async function hook(
  client: SfwClient,
  r: Receiver,
  events: WebhookView['events'] = ['session.finished'],
  url = r.url,
): Promise<WebhookView> {
  const w = await client.createWebhook({ url, events });
  r.secret = w.secret;
  return w;
}

/** Enqueues one session of `type`, claims it and ends it with `status` through the runner API. */
async function finish(
  a: TestApi,
  type: string,
  status: 'succeeded' | 'failed' | 'error' = 'succeeded',
  result?: unknown,
): Promise<string> {
  const s = await a.client.createSession({ type });
  const { sessions } = await a.runnerClient.claim(`runner-${type}`, {
    slots: 1,
    types: [type],
    maxConcurrency: 10,
  });
  const c = sessions[0]!;
  expect(c.id).toBe(s.id);
  await a.runnerClient.complete(s.id, {
    leaseToken: c.leaseToken,
    status,
    ...(result === undefined ? {} : { result }),
    ...(status === 'succeeded' ? {} : { errorMessage: `it ${status}` }),
  });
  return s.id;
}

async function deliveries(a: TestApi, webhookId: string) {
  return (await a.client.listWebhookDeliveries(webhookId)).items;
}

describe('webhooks', () => {
  it('delivers a signed Standard Webhooks event the SDK verifies, once', async () => {
    const r = await receiver();
    const w = await hook(api.client, r);
    expect(w.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const id = await finish(api, 'wh-signed', 'succeeded', { extracted: { title: 'Hello' } });
    const [got] = await waitFor(() => (r.of(id).length > 0 ? r.of(id) : null), { what: 'the delivery' });
    expect(got!.verified).toBe(true);
    expect(got!.event).toMatchObject({
      type: 'session.succeeded',
      data: { id, type: 'wh-signed', status: 'succeeded', result: { extracted: { title: 'Hello' } } },
    });
    expect(Number.isNaN(Date.parse(got!.event!.timestamp))).toBe(false);
    // The body as sent verifies; a changed byte or another secret does not.
    const headers = { 'webhook-id': got!.id, 'webhook-timestamp': String(Math.floor(Date.now() / 1000)) };
    expect(() =>
      verifyWebhook({
        payload: got!.body.replace('Hello', 'Hellp'),
        headers: { ...headers },
        secret: r.secret,
      }),
    ).toThrow(WebhookVerificationError);

    const [d] = await waitFor(async () => {
      const list = await deliveries(api, w.id);
      return list[0]?.status === 'delivered' ? list : null;
    });
    expect(d).toMatchObject({
      id: got!.id,
      sessionId: id,
      event: 'session.succeeded',
      status: 'delivered',
      attempts: 1,
      lastStatusCode: 200,
      lastError: null,
      nextAttemptAt: null,
    });
    expect(r.got).toHaveLength(1);
    await api.client.deleteWebhook(w.id);
  });

  it("names a scheduled session's schedule and fire time in its event", async () => {
    const firing = await startTestApi('webhooks-schedules', {
      db: { db: api.db, url: api.databaseUrl },
      schedules: true,
    });
    try {
      const r = await receiver();
      const w = await hook(api.client, r, ['session.succeeded']);
      const sched = await api.client.createSchedule({
        name: 'wh-every-second',
        cron: '* * * * * *',
        session: { type: 'wh-scheduled' },
      });
      const { sessions } = await api.runnerClient.claim('runner-scheduled', {
        slots: 1,
        types: ['wh-scheduled'],
        waitMs: 5000,
      });
      await api.client.deleteSchedule(sched.id);
      const s = sessions[0]!;
      await api.runnerClient.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded' });
      const [got] = await waitFor(() => (r.of(s.id).length > 0 ? r.of(s.id) : null));
      const view = await api.client.getSession(s.id);
      expect(got!.event!.data).toMatchObject({ scheduleId: sched.id, scheduledFor: view.scheduledFor });
      expect(view.scheduledFor).not.toBeNull();
      await api.client.deleteWebhook(w.id);
    } finally {
      await firing.stop();
    }
  });

  it('sends each webhook only the events it asked for, from every path that ends a session', async () => {
    const failed = await receiver();
    const succeeded = await receiver();
    const cancelled = await receiver();
    const wf = await hook(api.client, failed, ['session.failed', 'session.error']);
    const ws = await hook(api.client, succeeded, ['session.succeeded']);
    const wc = await hook(api.client, cancelled, ['session.cancelled']);
    const ok = await finish(api, 'wh-events');
    const bad = await finish(api, 'wh-events', 'failed');
    const broken = await finish(api, 'wh-events', 'error');
    const queued = await api.client.createSession({ type: 'wh-events-never-claimed' });
    await api.client.cancelSession(queued.id);
    // The reaper's path: a confirmed claim whose lease lapsed, out of attempts.
    const lost = await api.client.createSession({ type: 'wh-events-lost' });
    const { sessions } = await api.runnerClient.claim('runner-lost', { slots: 1, types: ['wh-events-lost'] });
    await api.runnerClient.heartbeat('runner-lost', {
      activeSessions: 1,
      maxConcurrency: 1,
      sessions: [{ id: lost.id, leaseToken: sessions[0]!.leaseToken }],
    });
    await api.db.query(`UPDATE sessions SET lease_expires_at = now() - interval '1 minute' WHERE id = $1`, [
      lost.id,
    ]);
    await reapSessions(api.db, 1000);
    expect((await api.client.getSession(lost.id)).status).toBe('error');
    await waitFor(() => failed.got.length >= 3 && succeeded.got.length >= 1 && cancelled.got.length >= 1, {
      what: 'the three receivers',
    });
    // Let any stray delivery arrive before counting.
    await waitFor(async () => {
      const all = [
        ...(await deliveries(api, wf.id)),
        ...(await deliveries(api, ws.id)),
        ...(await deliveries(api, wc.id)),
      ];
      return all.every((d) => d.status === 'delivered');
    });
    expect(failed.got.map((g) => [g.event?.type, g.event?.data.id]).sort()).toEqual(
      [
        ['session.error', broken],
        ['session.error', lost.id],
        ['session.failed', bad],
      ].sort(),
    );
    expect(succeeded.got.map((g) => [g.event?.type, g.event?.data.id])).toEqual([['session.succeeded', ok]]);
    expect(cancelled.got.map((g) => [g.event?.type, g.event?.data.id])).toEqual([
      ['session.cancelled', queued.id],
    ]);
    expect(failed.got.find((g) => g.event?.data.id === bad)!.event?.data.errorMessage).toBe('it failed');
    expect(failed.got.find((g) => g.event?.data.id === lost.id)!.event?.data.errorMessage).toBe(
      'Runner connection lost',
    );
    for (const w of [wf, ws, wc]) await api.client.deleteWebhook(w.id);
  });

  it('retries a receiver that is down and delivers once it is back', async () => {
    const port = await freePort();
    const r = new Receiver();
    const w = await api.client.createWebhook({
      url: `http://127.0.0.1:${port}/hook`,
      events: ['session.finished'],
    });
    r.secret = w.secret;
    const id = await finish(api, 'wh-down');
    // Connection refused, several times, with the error shown.
    const tried = await waitFor(async () => {
      const [d] = await deliveries(api, w.id);
      return d && d.attempts >= 3 ? d : null;
    });
    expect(tried.status).toBe('pending');
    expect(tried.lastStatusCode).toBeNull();
    expect(tried.lastError).toMatch(/ECONNREFUSED/);
    expect(Date.parse(tried.nextAttemptAt!)).toBeGreaterThan(Date.parse(tried.lastAttemptAt!));
    await r.listen(port);
    receivers.push(r);
    const [d] = await waitFor(async () => {
      const list = await deliveries(api, w.id);
      return list[0]?.status === 'delivered' ? list : null;
    });
    expect(d!.attempts).toBeGreaterThanOrEqual(4);
    expect(d!.lastStatusCode).toBe(200);
    expect(r.of(id)).toHaveLength(1);
    expect(r.got[0]!.verified).toBe(true);
    await api.client.deleteWebhook(w.id);
  });

  it('retries a 4xx receiver with backoff until the retry window closes, then marks the delivery failed', async () => {
    const r = await receiver(() => 400);
    const w = await hook(api.client, r);
    const id = await finish(api, 'wh-4xx');
    const [d] = await waitFor(
      async () => {
        const list = await deliveries(api, w.id);
        return list[0]?.status === 'failed' ? list : null;
      },
      { timeoutMs: 20_000, what: 'the delivery to fail' },
    );
    expect(d!.lastStatusCode).toBe(400);
    expect(d!.lastError).toBe('answered HTTP 400');
    expect(d!.nextAttemptAt).toBeNull();
    expect(Date.parse(d!.expiresAt!) - Date.parse(d!.createdAt)).toBe(WEBHOOKS.retryMs);
    // Tries doubled from 100 ms up to 800 ms over 5 s: several, each received once with the same webhook-id.
    expect(d!.attempts).toBeGreaterThanOrEqual(4);
    expect(d!.attempts).toBeLessThanOrEqual(15);
    expect(r.of(id)).toHaveLength(d!.attempts);
    expect(new Set(r.got.map((g) => g.id))).toEqual(new Set([d!.id]));
    expect(new Set(r.got.map((g) => g.body)).size).toBe(1);

    const text = await api.client.metrics();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`).toBe('');
    expect(text).toMatch(/^sfw_webhook_deliveries_total\{replica="[^"]+",outcome="failed"\} [1-9]/m);
    expect(text).toMatch(/^sfw_webhook_deliveries_total\{replica="[^"]+",outcome="retried"\} [1-9]/m);
    expect(text).toMatch(/^sfw_webhook_delivery_latency_seconds_count\{replica="[^"]+"\} [1-9]/m);
    expect(text).toMatch(/^sfw_webhook_deliveries_pending \d+$/m);

    // Sent again by hand: pending with a fresh window, the same id and body.
    const again = await api.client.redeliverWebhook(w.id, d!.id);
    expect(again.status).toBe('pending');
    await waitFor(() => r.of(id).length > d!.attempts);
    expect(r.of(id).at(-1)!.id).toBe(d!.id);
    await api.client.deleteWebhook(w.id);
  });

  it('counts a receiver that does not answer within the deadline as a failed try, and tries again', async () => {
    const db = await freshDb('webhooks-timeout');
    const a = await startTestApi('webhooks-timeout', {
      db,
      deps: { webhooks: { ...WEBHOOKS, timeoutMs: 300, backoffMs: 1500 } },
    });
    try {
      const r = await receiver((n) => (n === 1 ? 0 : 200));
      const w = await hook(a.client, r);
      const id = await finish(a, 'wh-timeout');
      const late = await waitFor(async () => {
        const [d] = await deliveries(a, w.id);
        return d?.lastError ? d : null;
      });
      expect(late).toMatchObject({ status: 'pending', attempts: 1, lastStatusCode: null });
      expect(late.lastError).toBe('no answer within 300 ms');
      const [d] = await waitFor(async () => {
        const list = await deliveries(a, w.id);
        return list[0]?.status === 'delivered' ? list : null;
      });
      expect(d).toMatchObject({ attempts: 2, lastStatusCode: 200, lastError: null });
      expect(r.of(id)).toHaveLength(2);
      expect(r.of(id)[0]!.id).toBe(r.of(id)[1]!.id);
    } finally {
      await a.stop();
      await db.db.end();
    }
  });

  it('leaves a result over 256 KiB out of the event and says so', async () => {
    const r = await receiver();
    const w = await hook(api.client, r, ['session.succeeded']);
    const id = await finish(api, 'wh-big', 'succeeded', { blob: 'x'.repeat(300 * 1024) });
    const [got] = await waitFor(() => (r.of(id).length > 0 ? r.of(id) : null));
    expect(got!.verified).toBe(true);
    expect(got!.event!.data.result).toBeUndefined();
    expect(got!.event!.data.truncated).toEqual(['result']);
    expect(got!.body.length).toBeLessThan(10_000);
    await api.client.deleteWebhook(w.id);
  });

  it('two API replicas never send the same try twice', async () => {
    const second = await startTestApi('webhooks-2', {
      db: { db: api.db, url: api.databaseUrl },
      deps: { webhooks: WEBHOOKS },
    });
    try {
      const r = await receiver();
      const w = await hook(api.client, r);
      const type = 'wh-replicas';
      const n = 40;
      await api.client.createSessions(Array.from({ length: n }, () => ({ type })));
      const { sessions } = await api.runnerClient.claim('runner-replicas', {
        slots: n,
        types: [type],
        maxConcurrency: n,
      });
      expect(sessions).toHaveLength(n);
      // Half one at a time through either replica (sfw_complete), half in one batch (the exchange).
      const half = n / 2;
      await Promise.all(
        sessions.slice(0, half).map((s, i) =>
          (i % 2 ? api : second).runnerClient.complete(s.id, {
            leaseToken: s.leaseToken,
            status: 'succeeded',
          }),
        ),
      );
      const batch = await second.runnerClient.completeMany(
        'runner-replicas',
        sessions
          .slice(half)
          .map((s) => ({ id: s.id, leaseToken: s.leaseToken, status: 'succeeded' as const })),
      );
      expect(batch.items.map((c) => c.outcome)).toEqual(Array(half).fill('accepted'));
      await waitFor(async () => {
        const list = (await api.client.listWebhookDeliveries(w.id, { limit: 100 })).items;
        return list.length === n && list.every((d) => d.status === 'delivered');
      });
      const counts = new Map<string, number>();
      for (const g of r.got) counts.set(g.id, (counts.get(g.id) ?? 0) + 1);
      expect(counts.size).toBe(n);
      expect([...counts.values()].every((c) => c === 1)).toBe(true);
      const list = (await api.client.listWebhookDeliveries(w.id, { limit: 100 })).items;
      expect(list.every((d) => d.attempts === 1)).toBe(true);
      await api.client.deleteWebhook(w.id);
    } finally {
      await second.stop();
    }
  });

  it('delivers after a crash between the outcome and the send, and after a replica died mid-try', async () => {
    const db = await freshDb('webhooks-crash');
    const r = await receiver();
    // No sender: the outcomes commit with their deliveries, nothing is sent.
    const down = await startTestApi('webhooks-crash', { db });
    let w: WebhookView;
    let first: string;
    let second: string;
    try {
      w = await hook(down.client, r);
      first = await finish(down, 'wh-crash');
      second = await finish(down, 'wh-crash');
      // A replica claims a try whose lease lapses; another replica claims the next try; the first one's late
      // result is not recorded. Then that replica dies before sending.
      const [stale] = await claimDeliveries(db.db, { limit: 1, leaseMs: 60_000, retryMs: 60_000 });
      expect(stale).toBeDefined();
      await db.db.query(
        `UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 hour' WHERE id = $1`,
        [stale!.id],
      );
      const taken = await claimDeliveries(db.db, { limit: 1, leaseMs: 1000, retryMs: 60_000 });
      expect(taken.map((t) => [t.id, t.attempts])).toEqual([[stale!.id, 2]]);
      const late = { id: stale!.id, body: '{}', ok: true, statusCode: 200, error: null, retryInMs: 0 };
      expect(await recordDelivery(db.db, { ...late, leaseToken: stale!.lease_token })).toBeNull();
      expect((await deliveries(down, w.id)).map((d) => d.status)).toEqual(['pending', 'pending']);
    } finally {
      await down.stop();
    }
    expect(r.got).toHaveLength(0);
    const up = await startTestApi('webhooks-crash', { db, deps: { webhooks: WEBHOOKS } });
    try {
      await waitFor(() => r.of(first).length === 1 && r.of(second).length === 1, { what: 'both deliveries' });
      const list = await waitFor(async () => {
        const l = await deliveries(up, w.id);
        return l.every((d) => d.status === 'delivered') ? l : null;
      });
      expect(list.map((d) => d.attempts).sort()).toEqual([1, 3]);
    } finally {
      await up.stop();
      await db.db.end();
    }
  });

  it('wakes on NOTIFY: a new delivery goes out long before the next poll', async () => {
    const db = await freshDb('webhooks-notify');
    const slow = await startTestApi('webhooks-notify', {
      db,
      deps: { webhooks: { ...WEBHOOKS, pollMs: 60_000 } },
    });
    try {
      const r = await receiver();
      await hook(slow.client, r);
      // Past the sender's first look at start: from here only a notification wakes it within a minute.
      await new Promise((res) => setTimeout(res, 300));
      const id = await finish(slow, 'wh-notify');
      const t0 = Date.now();
      await waitFor(() => r.of(id).length === 1, { timeoutMs: 5000, what: 'the delivery' });
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      await slow.stop();
      await db.db.end();
    }
  });

  it.skipIf(!pgbouncerBinary() && !process.env.REQUIRE_PGBOUNCER)(
    'delivers through PgBouncer in transaction mode from two poll-only replicas, each once',
    async () => {
      const bouncer = await startPgBouncer(inject('pgAdminUrl'), { poolSize: 4 });
      const name = `t_webhooks_bouncer_${process.pid}_${Date.now().toString(36)}`;
      const direct = createDb({ connectionString: await ensureDatabase(inject('pgAdminUrl'), name), max: 2 });
      await migrate(direct);
      await direct.end();
      const url = bouncer.urlFor(name);
      const dbs = [createDb({ connectionString: url, max: 8 }), createDb({ connectionString: url, max: 8 })];
      const apis: TestApi[] = [];
      try {
        for (const [i, db] of dbs.entries())
          apis.push(
            await startTestApi(`webhooks-bouncer-${i}`, {
              pollOnly: true,
              db: { db, url },
              deps: { webhooks: WEBHOOKS },
            }),
          );
        const [a, b] = apis as [TestApi, TestApi];
        const r = await receiver();
        await hook(a.client, r);
        const ids: string[] = [];
        for (let i = 0; i < 10; i++) ids.push(await finish(i % 2 ? a : b, 'wh-bouncer'));
        await waitFor(() => ids.every((id) => r.of(id).length >= 1), { what: 'ten deliveries' });
        await new Promise((res) => setTimeout(res, 500));
        expect(ids.map((id) => r.of(id).length)).toEqual(ids.map(() => 1));
        expect(r.got.every((g) => g.verified)).toBe(true);
      } finally {
        for (const api of apis) await api.stop();
        await Promise.all(dbs.map((d) => d.end()));
        await bouncer.stop();
      }
    },
  );

  it('writes no delivery while a webhook is disabled, and none after it is deleted', async () => {
    const r = await receiver();
    const w = await hook(api.client, r);
    const off = await api.client.updateWebhook(w.id, { enabled: false });
    expect(off.enabled).toBe(false);
    expect(off.secret).toBe(`whsec_…${w.secret.slice(-4)}`);
    await finish(api, 'wh-disabled');
    expect(await deliveries(api, w.id)).toEqual([]);
    await api.client.updateWebhook(w.id, { enabled: true });
    const on = await finish(api, 'wh-disabled');
    await waitFor(() => r.of(on).length === 1);
    await api.client.deleteWebhook(w.id);
    await expect(api.client.getWebhook(w.id)).rejects.toMatchObject({ status: 404 });
    const { rows } = await api.db.query('SELECT 1 FROM webhook_deliveries WHERE webhook_id = $1', [w.id]);
    expect(rows).toHaveLength(0);
    await finish(api, 'wh-disabled');
    expect(r.got).toHaveLength(1);
  });

  it('shows the secret only when asked, and takes a given one', async () => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    const w = await api.client.createWebhook({
      url: 'http://127.0.0.1:9/x',
      events: ['session.failed'],
      secret,
    });
    expect(w.secret).toBe(secret);
    expect((await api.client.getWebhook(w.id)).secret).toBe(`whsec_…${secret.slice(-4)}`);
    expect((await api.client.getWebhook(w.id, { reveal: true })).secret).toBe(secret);
    const listed = (await api.client.listWebhooks()).items.find((x) => x.id === w.id);
    expect(listed?.secret).toBe(`whsec_…${secret.slice(-4)}`);
    await api.client.deleteWebhook(w.id);
  });

  it('refuses bad webhooks with 400 and the field path, changing nothing', async () => {
    const before = (await api.client.listWebhooks()).items.length;
    const cases: [Record<string, unknown>, string][] = [
      [{ url: 'ftp://example.com/x', events: ['session.finished'] }, 'body.url'],
      [{ url: 'not a url', events: ['session.finished'] }, 'body.url'],
      [{ url: 'http://169.254.169.254/latest', events: ['session.finished'] }, 'body.url'],
      [{ url: 'http://metadata.google.internal/', events: ['session.finished'] }, 'body.url'],
      [{ url: 'http://127.0.0.1:9/', events: ['session.started'] }, 'body.events.0'],
      [{ url: 'http://127.0.0.1:9/', events: [] }, 'body.events'],
      [{ url: 'http://127.0.0.1:9/', events: ['session.failed', 'session.failed'] }, 'body.events'],
      [{ url: 'http://127.0.0.1:9/' }, 'body.events'],
      [{ url: 'http://127.0.0.1:9/', events: ['session.failed'], secret: 'hunter2' }, 'body.secret'],
      [{ url: 'http://127.0.0.1:9/', events: ['session.failed'], extra: 1 }, 'body.extra'],
    ];
    for (const [body, path] of cases) {
      const res = await fetch(`${api.url}/v1/webhooks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = (await res.json()) as { error: { path?: string } };
      expect([res.status, answer.error.path], JSON.stringify(body)).toEqual([400, path]);
    }
    const w = await api.client.createWebhook({ url: 'http://127.0.0.1:9/ok', events: ['session.failed'] });
    const err = await api.client
      .updateWebhook(w.id, { url: 'http://169.254.169.254/' })
      .catch((e: unknown) => e as ApiError);
    expect(err).toBeInstanceOf(ApiError);
    expect([(err as ApiError).status, (err as ApiError).path]).toEqual([400, 'body.url']);
    expect((await api.client.getWebhook(w.id)).url).toBe('http://127.0.0.1:9/ok');
    await api.client.deleteWebhook(w.id);
    expect((await api.client.listWebhooks()).items.length).toBe(before);
    await expect(
      api.client.listWebhookDeliveries('00000000-0000-7000-8000-000000000000'),
    ).rejects.toMatchObject({
      status: 404,
    });
  });

  it('holds each try to the target policy at send time, on the resolved address', async () => {
    const r = await receiver();
    const send = (url: string, allowedTargets?: string) =>
      postWebhook({
        url,
        body: '{}',
        headers: {},
        timeoutMs: 2000,
        policy: parseTargetPolicy({ allowedTargets }),
      });
    // A host the policy does not list.
    const unlisted = await send(r.url, 'example.com');
    expect(unlisted.ok).toBe(false);
    expect(unlisted.error).toMatch(
      /refused by the target policy: 127\.0\.0\.1:\d+ is not in ALLOWED_TARGETS/,
    );
    // A listed name that resolves inside the machine (this host's name → 127.0.0.1) without its address listed.
    const host = os.hostname().toLowerCase();
    const addresses = await lookup(host, { all: true }).catch(() => []);
    if (addresses.some((a) => a.address.startsWith('127.'))) {
      const named = await send(`http://${host}:${r.port}/hook`, host);
      expect(named.error).toMatch(
        /resolves to 127\.[\d.]+, an internal address ALLOWED_TARGETS does not list/,
      );
    }
    expect(r.got).toHaveLength(0);
    // Allowed by address: sent.
    expect(await send(r.url, `127.0.0.1:${r.port}`)).toMatchObject({ ok: false, statusCode: 401 });
    expect(r.got).toHaveLength(1);
  });
  it('is managed from the CLI: sfw webhooks create, list, get, update, deliveries, retry, delete', async () => {
    const cli = fileURLToPath(new URL('../helpers/runner-cli.ts', import.meta.url));
    const sfw = (...args: string[]) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', cli, 'webhooks', ...args],
          { env: { ...process.env, API_BASE_URL: api.url } },
          (error, out, err) => resolve({ code: error ? Number(error.code ?? 1) : 0, out, err }),
        );
      });
    const r = await receiver();
    const made = await sfw(
      'create',
      '--url',
      r.url,
      '--events',
      'session.succeeded,session.failed',
      '--json',
    );
    expect(made.code).toBe(0);
    const w = JSON.parse(made.out) as WebhookView;
    r.secret = w.secret;
    expect(w.events).toEqual(['session.succeeded', 'session.failed']);
    expect((await sfw('list')).out).toContain(w.id);
    expect((await sfw('get', w.id)).out).toContain(`whsec_…${w.secret.slice(-4)}`);
    expect((await sfw('get', w.id, '--reveal')).out).toContain(w.secret);
    const id = await finish(api, 'wh-cli');
    await waitFor(() => r.of(id).length === 1);
    const listed = await waitFor(async () => {
      const o = await sfw('deliveries', w.id, '--status', 'delivered');
      return o.out.includes(id) ? o : null;
    });
    expect(listed.out).toMatch(/TRIES/);
    const [d] = await deliveries(api, w.id);
    expect((await sfw('retry', w.id, d!.id)).out).toContain(`${d!.id}: pending`);
    await waitFor(() => r.of(id).length === 2);
    expect((await sfw('update', w.id, '--disable')).out).toMatch(/enabled\s+false/);
    const bad = await sfw('create', '--url', r.url, '--events', 'session.started');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('"session.started" is not an event');
    const refused = await sfw('update', w.id, '--url', 'http://169.254.169.254/');
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain('body.url');
    expect((await sfw('delete', w.id)).out).toContain(`deleted webhook ${w.id}`);
    expect((await sfw('get', w.id)).code).not.toBe(0);
  });
  it('shows webhooks and their deliveries with their tries on the dashboard', async () => {
    const r = await receiver((n) => (n === 1 ? 503 : 200));
    const browser = await chromium.launch({ executablePath: await requireChromium() });
    try {
      const page = await browser.newPage();
      await page.goto(`${api.url}/#/webhooks`);
      await page.getByLabel('URL').fill(r.url);
      await page.getByLabel('session.succeeded').check();
      await page.getByRole('button', { name: 'Create' }).click();
      const secret = await page.locator('#webhook-result code.secret').textContent();
      expect(secret).toMatch(/^whsec_/);
      r.secret = secret!;
      const w = (await api.client.listWebhooks()).items.find((x) => x.url === r.url)!;
      expect(w.events).toEqual(['session.succeeded', 'session.failed']);
      const id = await finish(api, 'wh-dashboard');
      await waitFor(() => r.of(id).length === 2, { what: 'a failed try, then the delivery' });
      await page.getByRole('link', { name: r.url }).click();
      const row = page.locator('#deliveries tbody tr').first();
      await row.getByText('delivered').waitFor();
      expect(await row.locator('td').nth(3).textContent()).toBe('2');
      expect(await row.locator('td').nth(4).textContent()).toBe('HTTP 200');
      await row.getByRole('button', { name: 'Send again' }).click();
      await waitFor(() => r.of(id).length === 3);
      await page.getByRole('button', { name: 'Disable' }).click();
      await waitFor(async () => !(await api.client.getWebhook(w.id)).enabled);
      await api.client.deleteWebhook(w.id);
    } finally {
      await browser.close();
    }
  });
});
