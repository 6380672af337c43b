import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SfwClient } from '@session-framework/sdk';
import { freshDb } from '../helpers/db.js';
import { freePort, spawnSfw, type SfwProcess } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';
import type { Db } from '../../src/store/db.js';

/**
 * Schedules when API replicas die: two `sfw api` processes over one database, SIGKILLed (no shutdown, a
 * pass may be cut mid-transaction) one and then both, and started again.
 */

let db: Db;
let url: string;
const procs: SfwProcess[] = [];

async function startReplica(): Promise<{ proc: SfwProcess; client: SfwClient }> {
  const port = await freePort();
  const proc = spawnSfw(['api'], { DATABASE_URL: url, PORT: String(port), HOST: '127.0.0.1' });
  procs.push(proc);
  await proc.waitForOutput(/listening on/, 60_000);
  return { proc, client: new SfwClient({ baseUrl: `http://127.0.0.1:${port}`, retries: 0 }) };
}

async function kill(p: SfwProcess): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

beforeAll(async () => {
  ({ db, url } = await freshDb('schedules_kill'));
});
afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) await kill(p);
  await db.end();
});

async function fireTimes(scheduleId: string): Promise<{ fire: number; created: number }[]> {
  const { rows } = await db.query<{ fire: Date; created: Date }>(
    'SELECT scheduled_for AS fire, created_at AS created FROM sessions WHERE schedule_id = $1 ORDER BY 1',
    [scheduleId],
  );
  return rows.map((r) => ({ fire: r.fire.getTime(), created: r.created.getTime() }));
}

const contiguous = (times: number[]) => times.every((t, i) => i === 0 || t - times[i - 1]! === 2000);

describe('schedules across killed API replicas', () => {
  it('go on from the surviving replica without a gap, and after all die make one session for the missed times', async () => {
    const a = await startReplica();
    const b = await startReplica();
    const s = await a.client.createSchedule({
      name: 'killed',
      cron: '*/2 * * * * *',
      overlap: 'allow',
      session: { type: 'kill-check' },
    });
    await waitFor(async () => (await fireTimes(s.id)).length >= 2, { what: 'two fires', timeoutMs: 15_000 });

    // One replica dies: the other fires every time, none twice.
    await kill(a.proc);
    const oneDown = (await fireTimes(s.id)).length;
    await waitFor(async () => (await fireTimes(s.id)).length >= oneDown + 3, {
      what: 'three fires by the survivor',
      timeoutMs: 15_000,
    });
    const beforeOutage = (await fireTimes(s.id)).map((r) => r.fire);
    expect(new Set(beforeOutage).size).toBe(beforeOutage.length);
    expect(contiguous(beforeOutage)).toBe(true);

    // Both die; 7 s later two new ones start.
    await kill(b.proc);
    await b.client.close();
    await a.client.close();
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, 7000));
    const upAt = Date.now();
    const c = await startReplica();
    await startReplica();
    await waitFor(async () => (await fireTimes(s.id)).filter((r) => r.created >= upAt).length >= 3, {
      what: 'three fires after the restart',
      timeoutMs: 20_000,
    });
    await c.client.updateSchedule(s.id, { enabled: false });
    await c.client.close();

    const all = await fireTimes(s.id);
    const times = all.map((r) => r.fire);
    expect(new Set(times).size).toBe(times.length);
    const before = all.filter((r) => r.created < downAt);
    const after = all.filter((r) => r.created >= upAt);
    expect(before.length + after.length).toBe(all.length);
    // catchUp latest: the fire times of the outage are not replayed, one session stands for them all.
    expect(after[0]!.fire - before[before.length - 1]!.fire).toBeGreaterThanOrEqual(6000);
    expect(contiguous(after.map((r) => r.fire))).toBe(true);
  });
});
