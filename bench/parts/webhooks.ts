import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook, type WebhookEvent } from '@session-framework/sdk';
import { startApiProcess, until, type BenchApi } from '../lib/env.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult } from '../lib/report.js';
import { nowMs, ratio, round, summarize, type Summary } from '../lib/stats.js';

/**
 * Webhook delivery latency: a session becomes final (finishedAt, the completing transaction's time) →
 * a receiver on 127.0.0.1 has the verified delivery. Baseline in the same run: a client long-polling
 * GET /v1/sessions/:id/wait for the same session, the poller a user would otherwise write (both woken
 * by NOTIFY at the commit). Then a burst: many sessions completed in back-to-back batches of 100 (a batch holds at most 100), until every delivery
 * arrived. Both on one `sfw api` process with its default webhook settings.
 */

interface Receiver {
  url: string;
  secret: string;
  /** Session id → wall-clock ms when its delivery arrived (verified). */
  got: Map<string, number>;
  bad: number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const r: Receiver = { url: '', secret: '', got: new Map(), bad: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = nowMs();
      try {
        const event: WebhookEvent = verifyWebhook({
          payload: Buffer.concat(chunks),
          headers: req.headers,
          secret: r.secret,
        });
        if (!r.got.has(event.data.id)) r.got.set(event.data.id, at);
        res.statusCode = 204;
      } catch {
        r.bad++;
        res.statusCode = 401;
      }
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sfw`;
  r.close = () => new Promise((resolve) => server.close(() => resolve()));
  return r;
}

interface Sequential {
  webhook: Summary;
  wait: Summary;
}

/** One session at a time: claim, then complete while a waiter long-polls it. */
async function sequential(api: BenchApi, r: Receiver, n: number): Promise<Sequential> {
  const hook: number[] = [];
  const wait: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = await api.client.createSession({ type: 'bench-webhook' });
    const { sessions } = await api.runnerClient.claim('bench-webhooks', {
      slots: 1,
      types: ['bench-webhook'],
      maxConcurrency: 1,
    });
    const c = sessions[0];
    if (!c) throw new Error('no session to claim');
    let waited = 0;
    const waiter = api.client.waitSession(s.id, 30_000).then(() => (waited = nowMs()));
    // Let the long-poll reach the API before the outcome does.
    await new Promise((res) => setTimeout(res, 20));
    const done = await api.runnerClient.complete(s.id, { leaseToken: c.leaseToken, status: 'succeeded' });
    const finished = Date.parse(done.finishedAt ?? '');
    await waiter;
    await until(() => r.got.has(s.id), `the delivery of ${s.id}`, 30_000, 1);
    hook.push(r.got.get(s.id)! - finished);
    wait.push(waited - finished);
  }
  const skip = Math.min(5, Math.floor(n / 10));
  return { webhook: summarize(hook.slice(skip)), wait: summarize(wait.slice(skip)) };
}

/** n sessions completed in back-to-back batches of 100: time until the last delivery, and each one's latency. */
async function burst(api: BenchApi, r: Receiver, n: number) {
  await api.client.createSessions(Array.from({ length: n }, () => ({ type: 'bench-webhook-burst' })));
  const { sessions } = await api.runnerClient.claim('bench-webhooks-burst', {
    slots: n,
    types: ['bench-webhook-burst'],
    maxConcurrency: n,
  });
  const t0 = nowMs();
  // A completion batch holds at most 100 sessions: the burst is back-to-back batches of 100.
  for (let i = 0; i < sessions.length; i += 100) {
    await api.runnerClient.completeMany(
      'bench-webhooks-burst',
      sessions
        .slice(i, i + 100)
        .map((s) => ({ id: s.id, leaseToken: s.leaseToken, status: 'succeeded' as const })),
    );
  }
  const committed = nowMs();
  await until(() => sessions.every((s) => r.got.has(s.id)), `${n} deliveries`, 120_000, 5);
  const last = Math.max(...sessions.map((s) => r.got.get(s.id)!));
  return {
    n: sessions.length,
    latency: summarize(sessions.map((s) => r.got.get(s.id)! - committed)),
    allDeliveredMs: round(last - t0),
    perSecond: round((sessions.length / (last - t0)) * 1000, 0),
  };
}

export async function runWebhooks(ctx: BenchContext): Promise<PartResult> {
  const n = size(ctx, 200, 10);
  const burstN = size(ctx, 1000, 20);
  const { url, db } = await ctx.pg.sessionsDatabase('webhooks');
  await db.end();
  const api = await startApiProcess(url);
  const r = await startReceiver();
  try {
    const w = await api.client.createWebhook({ url: r.url, events: ['session.finished'] });
    r.secret = w.secret;
    ctx.log(`webhooks: ${n} sessions one at a time, a long-poll waiter on each as the baseline`);
    const seq = await sequential(api, r, n);
    ctx.log(`webhooks: a burst of ${burstN} completions in batches of 100`);
    const b = await burst(api, r, burstN);
    if (r.bad > 0) throw new Error(`${r.bad} deliveries did not verify`);
    const row = (system: string, s: Summary) => ({
      system,
      n: s.n,
      'p50 ms': s.p50,
      'p95 ms': s.p95,
      'p99 ms': s.p99,
      'max ms': s.max,
    });
    return {
      part: 'webhooks',
      rows: [
        row('sfw webhook: session final → receiver has it (verified)', seq.webhook),
        row('baseline: session final → GET /v1/sessions/:id/wait answers', seq.wait),
        row(`burst of ${b.n}: batch committed → each delivery`, b.latency),
      ],
      ratios: {
        'webhook p50 ms': seq.webhook.p50,
        'webhook p99 ms': seq.webhook.p99,
        'p50 webhook / long-poll wait': ratio(seq.webhook.p50, seq.wait.p50),
        'p99 webhook / long-poll wait': ratio(seq.webhook.p99, seq.wait.p99),
        'burst deliveries per second': b.perSecond,
      },
      notes: [
        'finishedAt is the completing transaction’s now() (before its commit), read against this machine’s clock: the same clock as the receiver',
        'one sfw api process, WEBHOOK_CONCURRENCY default (16), woken by NOTIFY sfw_webhooks; each try is a fresh HTTP connection',
        `burst: all ${b.n} delivered ${b.allDeliveredMs} ms after the batch was sent`,
      ],
      details: { sequential: seq, burst: b },
    };
  } finally {
    await r.close();
    await api.stop();
  }
}
