import type { SfwClient } from '@session-framework/sdk';
import { startApiProcess, until, type BenchApi } from '../lib/env.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult } from '../lib/report.js';
import { nowMs, ratio, summarize, type Summary } from '../lib/stats.js';

/**
 * Schedule lag: a schedule firing every second on two `sfw api` replicas over one database, fire time →
 * session created (its created_at, the firing transaction's time) and → claimed by an idle long-polling
 * runner. Baseline in the same run: what a user does without schedules, an external timer at each whole
 * second calling POST /v1/sessions, measured the same way. Both on the same machine and Postgres.
 */

const CLAIM_TYPES = ['bench-scheduled', 'bench-timer'];

interface Lags {
  created: Summary;
  claimed: Summary;
}

/** A runner stand-in: long-polls claims and completes at once, noting when each session was claimed. */
function startClaimer(client: SfwClient, claimedAt: Map<string, number>) {
  const ac = new AbortController();
  let stopping = false;
  const loop = (async () => {
    while (!stopping) {
      let got;
      try {
        got = await client.claim(
          'bench-schedules',
          { slots: 4, types: CLAIM_TYPES, waitMs: 30_000, maxConcurrency: 4 },
          ac.signal,
        );
      } catch (err) {
        if (stopping) return;
        throw err;
      }
      const at = nowMs();
      for (const s of got.sessions) claimedAt.set(s.id, at);
      await Promise.all(
        got.sessions.map((s) =>
          client.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded', result: {} }),
        ),
      );
    }
  })();
  return {
    async stop() {
      stopping = true;
      ac.abort();
      await loop.catch(() => undefined);
    },
  };
}

/** The baseline: at each of the next `n` whole seconds, enqueue a session for that second. */
async function externalTimer(client: SfwClient, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const fireAt = Math.ceil((Date.now() + 1) / 1000) * 1000;
    await new Promise((r) => setTimeout(r, fireAt - Date.now()));
    await client.createSession({ type: 'bench-timer', input: { fireAt: new Date(fireAt).toISOString() } });
  }
}

export async function runSchedules(ctx: BenchContext): Promise<PartResult> {
  const n = size(ctx, 60, 4);
  const { url, db } = await ctx.pg.sessionsDatabase('schedules');
  const apis: BenchApi[] = [];
  const claimedAt = new Map<string, number>();
  let claimer: ReturnType<typeof startClaimer> | undefined;
  try {
    apis.push(await startApiProcess(url), await startApiProcess(url));
    claimer = startClaimer(apis[0]!.runnerClient, claimedAt);
    ctx.log(`schedules: * * * * * * on 2 API replicas and an external timer + POST, ${n} fires each`);
    const schedule = await apis[0]!.client.createSchedule({
      name: 'bench-every-second',
      cron: '* * * * * *',
      overlap: 'allow',
      session: { type: 'bench-scheduled' },
    });
    // One fire more than measured: the first of each is dropped as warm-up.
    await externalTimer(apis[1]!.client, n + 1);
    await until(
      async () => {
        const { rows } = await db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM sessions WHERE schedule_id = $1',
          [schedule.id],
        );
        return (rows[0]?.n ?? 0) >= n + 1;
      },
      `${n + 1} scheduled sessions`,
      30_000,
    );
    await apis[0]!.client.updateSchedule(schedule.id, { enabled: false });
    await until(() => claimedAt.size >= 2 * (n + 1), 'every session claimed', 30_000);

    const { rows } = await db.query<{
      id: string;
      kind: string;
      fire_ms: number;
      created_ms: number;
    }>(
      `SELECT id, CASE WHEN schedule_id IS NULL THEN 'timer' ELSE 'schedule' END AS kind,
              (extract(epoch FROM coalesce(scheduled_for, (input->>'fireAt')::timestamptz)) * 1000)::float8 AS fire_ms,
              (extract(epoch FROM created_at) * 1000)::float8 AS created_ms
       FROM sessions ORDER BY 3`,
    );
    const lags = (kind: string): Lags => {
      const list = rows.filter((r) => r.kind === kind).slice(1);
      return {
        created: summarize(list.map((r) => r.created_ms - r.fire_ms)),
        claimed: summarize(
          list.filter((r) => claimedAt.has(r.id)).map((r) => claimedAt.get(r.id)! - r.fire_ms),
        ),
      };
    };
    const scheduled = lags('schedule');
    const timer = lags('timer');
    const fireTimes = rows.filter((r) => r.kind === 'schedule').map((r) => r.fire_ms);
    const duplicates = fireTimes.length - new Set(fireTimes).size;
    const row = (system: string, s: Summary) => ({
      system,
      n: s.n,
      'p50 ms': s.p50,
      'p95 ms': s.p95,
      'p99 ms': s.p99,
      'max ms': s.max,
    });
    return {
      part: 'schedules',
      rows: [
        row('sfw schedule, 2 replicas: fire time → session created', scheduled.created),
        row('sfw schedule, 2 replicas: fire time → claimed', scheduled.claimed),
        row('external timer + POST /v1/sessions: fire time → session created', timer.created),
        row('external timer + POST /v1/sessions: fire time → claimed', timer.claimed),
      ],
      ratios: {
        'schedule lag p50 ms': scheduled.created.p50,
        'schedule lag p99 ms': scheduled.created.p99,
        'p50 schedule / timer+POST (created)': ratio(scheduled.created.p50, timer.created.p50),
        'p50 schedule / timer+POST (claimed)': ratio(scheduled.claimed.p50, timer.claimed.p50),
        'fire times made twice': duplicates,
      },
      notes: [
        'session created = its created_at (now() of the firing or enqueue transaction); claimed = when the claim answer reached the bench process; all clocks are this machine’s',
        'the firing loop sleeps until the earliest next_run_at (at most 1 s), then one transaction takes the due schedules FOR UPDATE SKIP LOCKED and inserts their sessions',
        'the first fire of each is dropped as warm-up',
      ],
      details: { scheduled, timer, duplicates },
    };
  } finally {
    await claimer?.stop();
    for (const api of apis) await api.stop();
    await db.end();
  }
}
