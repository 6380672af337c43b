import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import { DEFAULT_ALERT_THRESHOLDS } from '../../src/server/alerts.js';
import { API_TOKEN, RUNNER_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';

let api: TestApi;

beforeAll(async () => {
  api = await startTestApi('metrics', {
    deps: {
      alertThresholds: { ...DEFAULT_ALERT_THRESHOLDS, failureRateMinSessions: 2, queueBackupFactor: 1 },
      runnerRetentionMs: 60_000,
    },
  });
});
afterAll(async () => {
  await api.stop();
});

/** Parses exposition text into `name{labels}` → value (the format is checked separately by promtool). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function promtool(args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { input, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

async function claimAll(runnerId: string, type: string, n: number): Promise<ClaimedSession[]> {
  const { sessions } = await api.runnerClient.claim(runnerId, { slots: n, types: [type], maxConcurrency: n });
  expect(sessions).toHaveLength(n);
  return sessions;
}

describe('GET /metrics', () => {
  it('exposes fleet-wide queue, histograms, runner health and request series that promtool accepts', async () => {
    await api.client.createSessions([
      ...Array.from({ length: 4 }, () => ({ type: 'shop', priority: 5 })),
      ...Array.from({ length: 3 }, () => ({ type: 'news' })),
    ]);
    const shop = await claimAll('runner-a', 'shop', 4);
    await api.runnerClient.heartbeat('runner-a', {
      activeSessions: 4,
      maxConcurrency: 4,
      sessions: shop.map((s) => ({ id: s.id, leaseToken: s.leaseToken })),
      memoryRssBytes: 123_456_789,
      hostname: 'host-a',
      version: '1.2.3',
    });
    const statuses = ['succeeded', 'succeeded', 'failed', 'error'] as const;
    await Promise.all(
      shop.map((s, i) =>
        api.runnerClient.complete(s.id, {
          leaseToken: s.leaseToken,
          status: statuses[i]!,
          ...(i >= 2 ? { errorMessage: 'broken' } : {}),
        }),
      ),
    );
    // One news session is running on a second runner; two stay queued; one session is cancelled while queued.
    await claimAll('runner-b', 'news', 1);
    const cancelled = await api.client.createSession({ type: 'later' });
    await api.client.cancelSession(cancelled.id);

    const text = await api.client.metrics();
    const check = promtool(['check', 'metrics'], text);
    expect(check.out).toBe('');
    expect(check.status).toBe(0);

    const m = samples(text);
    expect(m.get('sfw_sessions_queued{type="news",priority="0"}')).toBe(2);
    expect(m.get('sfw_sessions_running{type="news",priority="0"}')).toBe(1);
    expect(m.get('sfw_sessions_active')).toBe(1);
    expect(m.get('sfw_sessions_queued_oldest_age_seconds{type="news"}')).toBeGreaterThanOrEqual(0);
    expect(m.get('sfw_sessions_finished_total{type="shop",status="succeeded"}')).toBe(2);
    expect(m.get('sfw_sessions_finished_total{type="shop",status="failed"}')).toBe(1);
    expect(m.get('sfw_sessions_finished_total{type="shop",status="error"}')).toBe(1);
    expect(m.get('sfw_sessions_finished_total{type="later",status="cancelled"}')).toBe(1);
    expect(m.get('sfw_session_claim_wait_seconds_count{type="shop"}')).toBe(4);
    expect(m.get('sfw_session_claim_wait_seconds_count{type="news"}')).toBe(1);
    expect(m.get('sfw_session_claim_wait_seconds_bucket{type="shop",le="+Inf"}')).toBe(4);
    expect(m.get('sfw_session_duration_seconds_count{type="shop",status="succeeded"}')).toBe(2);
    expect(m.get('sfw_session_duration_seconds_bucket{type="shop",status="succeeded",le="3600"}')).toBe(2);
    // A session cancelled while queued never ran: it has no duration.
    expect(m.has('sfw_session_duration_seconds_count{type="later",status="cancelled"}')).toBe(false);

    expect(m.get('sfw_runners{state="up"}')).toBe(2);
    expect(m.get('sfw_fleet_capacity')).toBe(4 + 1);
    expect(m.get('sfw_runner_up{runner_id="runner-a"}')).toBe(1);
    expect(m.get('sfw_runner_sessions_executed_total{runner_id="runner-a"}')).toBe(4);
    expect(m.get('sfw_runner_failures_total{runner_id="runner-a"}')).toBe(2);
    expect(m.get('sfw_runner_memory_rss_bytes{runner_id="runner-a"}')).toBe(123_456_789);
    expect(m.get('sfw_runner_running_sessions{runner_id="runner-b"}')).toBe(1);
    expect(m.get('sfw_runner_heartbeat_age_seconds{runner_id="runner-a"}')).toBeLessThan(30);
    expect(
      m.get('sfw_runner_info{runner_id="runner-a",hostname="host-a",version="1.2.3",status="running"}'),
    ).toBe(1);
    // Failure rate 0.5 lifetime and recently (threshold 0.1, at least 2 sessions); 2 queued > 5 × 1 is false.
    expect(m.get('sfw_alerts_firing{name="HighFailureRate"}')).toBe(1);
    expect(m.get('sfw_alerts_firing{name="QueueBackup"}')).toBe(0);
    expect(m.get('sfw_scheduler_max_concurrency')).toBe(3);

    const replica = [...m.keys()].find((k) => k.startsWith('sfw_api_requests_total{'));
    expect(replica).toMatch(/replica="[^"]+"/);
    expect(
      [...m.entries()].some(
        ([k, v]) => k.includes('route="/v1/sessions/:id/complete"') && k.includes('code="200"') && v >= 4,
      ),
    ).toBe(true);
  });

  it('answers the same fleet numbers from a second API replica on the same database', async () => {
    const second = await startTestApi('metrics-b', { db: { db: api.db, url: api.databaseUrl } });
    try {
      const fleet = (t: string) =>
        t
          .split('\n')
          .filter(
            (l) =>
              l.startsWith('sfw_sessions_') || l.startsWith('sfw_session_') || l.startsWith('sfw_fleet_'),
          )
          .filter((l) => !l.includes('oldest_age'))
          .join('\n');
      const [a, b] = await Promise.all([api.client.metrics(), second.client.metrics()]);
      expect(fleet(b)).toBe(fleet(a));
      expect(fleet(a).length).toBeGreaterThan(100);
    } finally {
      await second.stop();
    }
  });

  it('lets a stopped runner leave the fleet view after the retention', async () => {
    await api.runnerClient.heartbeat('runner-gone', { activeSessions: 0, maxConcurrency: 2, sessions: [] });
    await api.runnerClient.stopRunner('runner-gone');
    expect((await api.client.runners()).map((r) => r.runnerId)).toContain('runner-gone');
    expect(samples(await api.client.metrics()).get('sfw_runner_stopped{runner_id="runner-gone"}')).toBe(1);
    await api.db.query(
      `UPDATE runner_health SET last_heartbeat = now() - interval '2 minutes' WHERE runner_id = 'runner-gone'`,
    );
    expect((await api.client.runners()).map((r) => r.runnerId)).not.toContain('runner-gone');
    expect(await api.client.metrics()).not.toContain('runner-gone');
  });

  it('reports a runner that stopped heartbeating as down and fires RunnerDown', async () => {
    await api.runnerClient.heartbeat('runner-silent', {
      activeSessions: 0,
      maxConcurrency: 1,
      sessions: [],
      hostname: 'odd "host"\\name\nline',
    });
    await api.db.query(
      `UPDATE runner_health SET last_heartbeat = now() - interval '90 seconds' WHERE runner_id = 'runner-silent'`,
    );
    const text = await api.client.metrics();
    expect(promtool(['check', 'metrics'], text).status).toBe(0);
    expect(text).toContain('hostname="odd \\"host\\"\\\\name\\nline"');
    const m = samples(text);
    expect(m.get('sfw_runner_up{runner_id="runner-silent"}')).toBe(0);
    expect(m.get('sfw_runners{state="down"}')).toBeGreaterThanOrEqual(1);
    const alerts = await api.client.alerts();
    expect(alerts.find((a) => a.name === 'RunnerDown')?.runnerId).toBe('runner-silent');
  });

  it('counts a draining runner as draining and not as capacity (it takes no new sessions)', async () => {
    await api.runnerClient.heartbeat('runner-drain', {
      activeSessions: 1,
      maxConcurrency: 2,
      sessions: [],
      status: 'draining',
    });
    const m = samples(await api.client.metrics());
    const runners = await api.client.runners();
    expect(m.get('sfw_runner_draining{runner_id="runner-drain"}')).toBe(1);
    expect(m.get('sfw_runners{state="draining"}')).toBe(1);
    expect(runners.find((r) => r.runnerId === 'runner-drain')?.status).toBe('draining');
    // Capacity is the sum over live runners that take sessions; the draining one is not among them.
    const taking = runners.filter((r) => r.live && r.status === 'running');
    const capacity = taking.reduce((n, r) => n + r.maxConcurrency, 0);
    expect(m.get('sfw_fleet_capacity')).toBe(capacity);
    expect((await api.client.queue()).fleetCapacity).toBe(capacity);
  });
});

describe('GET /v1/stats/timeseries', () => {
  it('gives per-minute depth, claims, wait and throughput from the rollup', async () => {
    const res = await fetch(`${api.url}/v1/stats/timeseries?minutes=5`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      minutes: number;
      points: {
        t: string;
        queued: number;
        enqueued: number;
        claimed: number;
        finished: number;
        failed: number;
      }[];
    };
    expect(body.points).toHaveLength(5);
    const sum = (k: 'enqueued' | 'claimed' | 'finished' | 'failed') =>
      body.points.reduce((n, p) => n + p[k], 0);
    const { rows } = await api.db.query<{ n: number; claimed: number; done: number; bad: number }>(
      `SELECT count(*)::int AS n, count(claimed_at)::int AS claimed,
              count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'error', 'cancelled'))::int AS done,
              count(*) FILTER (WHERE status IN ('failed', 'error'))::int AS bad FROM sessions`,
    );
    expect(sum('enqueued')).toBe(rows[0]!.n);
    expect(sum('claimed')).toBe(rows[0]!.claimed);
    expect(sum('finished')).toBe(rows[0]!.done);
    expect(sum('failed')).toBe(rows[0]!.bad);
    const queued = (await api.client.queue()).byStatus.queued;
    expect(body.points.at(-1)!.queued).toBe(queued);
  });
});

describe('deploy/prometheus', () => {
  it('ships alerting rules promtool accepts, with unit tests of the three alerts', () => {
    const check = promtool(['check', 'rules', 'deploy/prometheus/alerts.yml']);
    expect(check.out).toContain('SUCCESS: 3 rules found');
    expect(check.status).toBe(0);
    const test = promtool(['test', 'rules', 'deploy/prometheus/alerts.test.yml']);
    expect(test.out).toContain('SUCCESS');
    expect(test.status).toBe(0);
    const config = promtool(['check', 'config', '--syntax-only', 'deploy/prometheus/prometheus.yml']);
    expect(config.out).toContain('SUCCESS');
    expect(config.status).toBe(0);
  });
});

describe('GET /metrics behind tokens', () => {
  it('needs the API token when ops endpoints are protected; the runner token is refused', async () => {
    const guarded = await startTestApi('metrics-auth', { auth: true });
    try {
      expect((await fetch(`${guarded.url}/metrics`)).status).toBe(401);
      const asRunner = await fetch(`${guarded.url}/metrics`, {
        headers: { authorization: `Bearer ${RUNNER_TOKEN}` },
      });
      expect(asRunner.status).toBe(403);
      const res = await fetch(`${guarded.url}/metrics`, {
        headers: { authorization: `Bearer ${API_TOKEN}` },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(await res.text()).toContain('# TYPE sfw_session_duration_seconds histogram');
    } finally {
      await guarded.stop();
    }
  });
});
