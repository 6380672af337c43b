import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';
import { killTagged, spawnSfw, taggedProcesses, type SfwProcess } from '../helpers/runner.js';

/**
 * `sfw runner` as its own process, stopped by signals as an orchestrator would: SIGTERM drains, a second
 * SIGTERM hands in-flight sessions back, a restart with the same RUNNER_ID resumes. Chromium (the
 * pre-warmed pool) must be gone after every exit.
 */

const SESSIONS_DIR = 'test/fixtures/runner-sessions';
let api: TestApi;
const spawned: SfwProcess[] = [];

beforeAll(async () => {
  api = await startTestApi('runner_shutdown');
});
afterEach(async () => {
  for (const p of spawned.splice(0)) await killTagged(p.tag);
});
afterAll(async () => {
  await api.stop();
});

function runnerProcess(runnerId: string): SfwProcess {
  const p = spawnSfw(['runner'], {
    API_BASE_URL: api.url,
    RUNNER_ID: runnerId,
    MAX_CONCURRENCY: '2',
    POLL_INTERVAL_MS: '1000',
    HEARTBEAT_INTERVAL_MS: '500',
    SESSIONS_DIR,
  });
  spawned.push(p);
  return p;
}

async function status(id: string) {
  return (await api.client.getSession(id)).status;
}

async function runnerStatus(runnerId: string) {
  return (await api.client.runners()).find((r) => r.runnerId === runnerId)?.status;
}

async function expectNoProcessLeft(p: SfwProcess): Promise<void> {
  await waitFor(async () => (await taggedProcesses(p.tag)).length === 0, {
    timeoutMs: 10_000,
    what: 'no runner or Chromium process left',
  });
}

describe('sfw runner shutdown', () => {
  it('SIGTERM drains: in-flight sessions complete, no claim after the signal, status stopped, exit 0', async () => {
    const runnerId = 'drain-1';
    const p = runnerProcess(runnerId);
    await p.waitForOutput(/runner drain-1 serving/);
    // The browser pool is warm: Chromium processes belong to this runner.
    await waitFor(async () => (await taggedProcesses(p.tag)).some((x) => /chrom/i.test(x.cmd)), {
      what: 'Chromium started by the runner',
    });
    const a = await api.client.createSession({ type: 'sleep', input: { ms: 2000 } });
    const b = await api.client.createSession({ type: 'sleep', input: { ms: 2000 } });
    await waitFor(async () => (await status(a.id)) === 'running' && (await status(b.id)) === 'running', {
      what: 'both sessions running',
    });
    const signalledAt = new Date();
    p.child.kill('SIGTERM');
    await waitFor(async () => (await runnerStatus(runnerId)) === 'draining', { what: 'runner draining' });
    const late = await api.client.createSession({ type: 'sleep', input: { ms: 10 } });
    expect(await p.exited).toBe(0);
    for (const id of [a.id, b.id]) {
      const s = await api.client.getSession(id);
      expect(s.status).toBe('succeeded');
      expect(s.claimedBy).toBe(runnerId);
    }
    const { rows } = await api.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sessions WHERE claimed_at > $1`,
      [signalledAt],
    );
    expect(rows[0]!.n).toBe(0);
    expect(await status(late.id)).toBe('queued');
    expect(await runnerStatus(runnerId)).toBe('stopped');
    await expectNoProcessLeft(p);
    await api.client.cancelSession(late.id);
  });

  it('a second SIGTERM aborts in-flight sessions and hands them back to the queue', async () => {
    const runnerId = 'force-1';
    const p = runnerProcess(runnerId);
    await p.waitForOutput(/runner force-1 serving/);
    const a = await api.client.createSession({ type: 'sleep', input: { ms: 60_000 } });
    const b = await api.client.createSession({ type: 'sleep', input: { ms: 60_000 } });
    await waitFor(async () => (await status(a.id)) === 'running' && (await status(b.id)) === 'running', {
      what: 'both sessions running',
    });
    p.child.kill('SIGTERM');
    await waitFor(async () => (await runnerStatus(runnerId)) === 'draining', { what: 'runner draining' });
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    for (const id of [a.id, b.id]) {
      const s = await api.client.getSession(id);
      expect(s.status).toBe('queued');
      expect(s.claimedBy).toBeNull();
      expect(s.attempt).toBe(0);
      expect(s.attempts.at(-1)).toMatchObject({
        runnerId,
        status: 'queued',
        errorMessage: 'Runner stopped: handed back to the queue',
      });
    }
    expect(await runnerStatus(runnerId)).toBe('stopped');
    await expectNoProcessLeft(p);

    // Started again with the same RUNNER_ID, it resumes: the handed-back sessions run to the end.
    await api.db.query(`UPDATE sessions SET input = '{"ms": 50}' WHERE id = ANY($1)`, [[a.id, b.id]]);
    const again = runnerProcess(runnerId);
    await again.waitForOutput(/runner force-1 serving/);
    for (const id of [a.id, b.id]) {
      const s = await api.client.waitUntilDone(id, { timeoutMs: 15_000 });
      expect(s.status).toBe('succeeded');
      expect(s.claimedBy).toBe(runnerId);
      expect(s.attempt).toBe(1);
    }
    expect(await runnerStatus(runnerId)).toBe('running');
    again.child.kill('SIGINT');
    expect(await again.exited).toBe(0);
    expect(await runnerStatus(runnerId)).toBe('stopped');
    await expectNoProcessLeft(again);
  });

  it('kill -9 of the runner mid-session leaves no Chromium behind', async () => {
    const runnerId = 'killed-1';
    const p = runnerProcess(runnerId);
    await p.waitForOutput(/runner killed-1 serving/);
    await waitFor(async () => (await taggedProcesses(p.tag)).some((x) => /chrom/i.test(x.cmd)), {
      what: 'Chromium started by the runner',
    });
    const s = await api.client.createSession({ type: 'sleep', input: { ms: 60_000 } });
    await waitFor(async () => (await status(s.id)) === 'running', { what: 'session running' });
    p.child.kill('SIGKILL');
    await p.exited;
    await expectNoProcessLeft(p);
    // Still held by the dead runner's lease: the API's reaper recovers it when the lease lapses.
    expect(await status(s.id)).toBe('running');
  });

  it('sfw runner with a bad flag or setting says what to fix', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      expect(await main(['runner', '--bogus'], {})).toBe(2);
      expect(await main(['runner'], { MAX_CONCURRENCY: 'lots', API_BASE_URL: api.url })).toBe(2);
    } finally {
      spy.mockRestore();
    }
    expect(lines[0]).toMatch(/^sfw runner: Unknown option '--bogus'.*sfw runner --help/);
    expect(lines[1]).toContain('MAX_CONCURRENCY must be a whole number, got "lots"');
  });
});
