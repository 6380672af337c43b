import { describe, expect, it } from 'vitest';
import { runFleet } from '../../scripts/demo-fleet.js';

// The fleet demo as a test: `sfw api` (with its embedded Postgres) and four `sfw runner` processes, each
// on its own network namespace when this machine allows it (root + iproute2), else on loopback. Runner 4
// joins mid-run (before the second half of the sessions is enqueued), runner 2 is stopped with SIGTERM
// while it has sessions in flight.

const SESSIONS = 48;

describe('fleet: one queue, runners on separate hosts', () => {
  it('runs every session exactly once while a runner joins and another drains', async () => {
    const lines: string[] = [];
    const r = await runFleet({
      sessions: SESSIONS,
      sessionMs: [1000, 2000],
      maxConcurrency: 3,
      timeoutMs: 120_000,
      log: (line) => lines.push(line),
    });
    const ids = ['fleet-runner-1', 'fleet-runner-2', 'fleet-runner-3', 'fleet-runner-4'];
    expect(r.runnerIds).toEqual(ids);
    if (r.network === 'netns') {
      // Four hosts, four addresses on the fleet network.
      expect(new Set(Object.values(r.addresses)).size).toBe(4);
      expect(Object.values(r.addresses).every((a) => a.startsWith('10.77.0.'))).toBe(true);
    }

    // Every session done, once: one attempt, and the session's own log shows one execution, by the
    // runner the queue gave it to.
    expect(r.sessions).toHaveLength(SESSIONS);
    for (const s of r.sessions) {
      expect(s.status, `${s.id} ${s.errorMessage ?? ''}`).toBe('succeeded');
      expect(s.attempt).toBe(1);
      expect(s.attempts).toHaveLength(1);
      expect(s.attempts[0]?.runnerId).toBe(s.claimedBy);
      expect((s.result as { ranBy?: string }).ranBy).toBe(s.claimedBy);
      expect(r.executions.get(s.id)).toEqual([s.claimedBy]);
    }
    expect(r.executions.size).toBe(SESSIONS);

    // The queue was shared: every runner ran sessions; the late runner only after it joined.
    const byRunner = new Map<string, number>();
    for (const s of r.sessions) byRunner.set(s.claimedBy!, (byRunner.get(s.claimedBy!) ?? 0) + 1);
    for (const id of ids) expect(byRunner.get(id) ?? 0, `${id} ran sessions`).toBeGreaterThan(0);
    for (const s of r.sessions.filter((x) => x.claimedBy === 'fleet-runner-4'))
      expect(Date.parse(s.claimedAt!)).toBeGreaterThanOrEqual(r.joinedAt - 1000);

    // The stopped runner drained: what it held at SIGTERM finished there, it claimed nothing after, exit 0.
    const stopped = r.stopped;
    expect(stopped.exitCode).toBe(0);
    expect(stopped.inFlightAtSignal.length).toBeGreaterThan(0);
    for (const id of stopped.inFlightAtSignal) {
      const s = r.sessions.find((x) => x.id === id)!;
      expect(s.claimedBy).toBe(stopped.runnerId);
      expect(s.status).toBe('succeeded');
    }
    for (const s of r.sessions.filter((x) => x.claimedBy === stopped.runnerId))
      expect(Date.parse(s.claimedAt!)).toBeLessThan(stopped.signalledAt + 1000);

    // runner_health holds the history: four runners, the drained one `stopped`, the counts add up.
    expect(r.runners.map((x) => x.runnerId).sort()).toEqual(ids);
    for (const h of r.runners) {
      expect(h.status).toBe(h.runnerId === stopped.runnerId ? 'stopped' : 'running');
      expect(h.totalSessionsExecuted).toBe(byRunner.get(h.runnerId));
      expect(h.totalFailures).toBe(0);
      expect(h.maxConcurrency).toBe(3);
    }
    expect(lines.some((l) => l.includes('SIGTERM fleet-runner-2'))).toBe(true);
  }, 300_000);
});
