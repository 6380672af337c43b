import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { sfwFromSources } from '../helpers/sfw-cli.js';
import { waitFor } from '../helpers/wait.js';

/** `sfw schedules …` from the sources (node + tsx), against a real API running the firing loop. */

const sfw = (api: TestApi, args: string[]) => sfwFromSources(api.url, args);

let api: TestApi;
let dir: string;
beforeAll(async () => {
  api = await startTestApi('cli-schedules', { schedules: true });
  dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-cli-schedules-'));
});
afterAll(async () => {
  await api.stop();
});

describe('sfw schedules', () => {
  it('creates from a flow file, lists with next run and last runs, shows, changes, disables and deletes', async () => {
    const flow = path.join(dir, 'check.json');
    await writeFile(flow, JSON.stringify({ steps: [{ action: 'goto', url: 'http://127.0.0.1:9/' }] }));
    const created = await sfw(api, [
      'schedules',
      'create',
      'homepage',
      '--cron',
      '* * * * * *',
      '--flow',
      flow,
      '--timeout-ms',
      '5000',
      '--overlap',
      'allow',
      '--json',
    ]);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const s = JSON.parse(created.stdout) as { id: string; session: unknown; overlap: string };
    expect(s).toMatchObject({ overlap: 'allow', session: { type: 'flow', timeoutMs: 5000 } });
    await waitFor(async () => (await api.client.getSchedule(s.id)).recent.length >= 2, {
      what: 'two fires',
      timeoutMs: 10_000,
    });

    const list = await sfw(api, ['schedules', 'list']);
    expect(list.code).toBe(0);
    const [head, row] = list.stdout.trim().split('\n');
    expect(head).toMatch(/^NAME\s+CRON\s+TIMEZONE\s+ENABLED\s+NEXT RUN\s+LAST RUNS/);
    expect(row).toMatch(
      /^homepage\s+\* \* \* \* \* \*\s+UTC\s+yes\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+queued queued/,
    );

    const got = await sfw(api, ['schedules', 'get', 'homepage']);
    expect(got.code).toBe(0);
    expect(got.stdout).toMatch(/^next run\s+\d{4}-/m);
    expect(got.stdout).toMatch(/^SCHEDULED FOR\s+SESSION\s+STATUS/m);

    const off = await sfw(api, ['schedules', 'disable', 'homepage', '--json']);
    expect(JSON.parse(off.stdout)).toMatchObject({ enabled: false, nextRunAt: null });
    const moved = await sfw(api, [
      'schedules',
      'update',
      s.id,
      '--cron',
      '0 9 * * 1-5',
      '--timezone',
      'Europe/Paris',
    ]);
    expect(moved.code).toBe(0);
    expect(moved.stdout).toMatch(/^cron\s+0 9 \* \* 1-5 \(Europe\/Paris\)$/m);
    const on = await sfw(api, ['schedules', 'enable', 'homepage', '--json']);
    expect((JSON.parse(on.stdout) as { nextRunAt: string }).nextRunAt).toMatch(/T0[78]:00:00.000Z$/);

    const bad = await sfw(api, ['schedules', 'update', 'homepage', '--cron', '99 * * * *']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/400 body\.cron: must be five fields/);

    const sessions = await sfw(api, ['sessions', '--schedule', s.id, '--json']);
    const page = JSON.parse(sessions.stdout) as {
      items: { id: string; scheduleId: string; scheduledFor: string }[];
    };
    expect(page.items.length).toBeGreaterThanOrEqual(2);
    expect(page.items.every((i) => i.scheduleId === s.id)).toBe(true);
    const one = await sfw(api, ['sessions', page.items[0]!.id]);
    expect(one.stdout).toContain(`made by schedule ${s.id} for ${page.items[0]!.scheduledFor}`);

    const deleted = await sfw(api, ['schedules', 'delete', 'homepage']);
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toMatch(/^deleted schedule homepage/);
    const none = await sfw(api, ['schedules', 'get', 'homepage']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no schedule named "homepage"/);
  });

  it('names what is missing', async () => {
    const noCron = await sfw(api, ['schedules', 'create', 'x', '--type', 'check']);
    expect([noCron.code, noCron.stderr]).toEqual([2, expect.stringMatching(/missing --cron/)]);
    const noSession = await sfw(api, ['schedules', 'create', 'x', '--cron', '* * * * *']);
    expect(noSession.stderr).toMatch(/missing the session/);
    const runAt = await sfw(api, ['schedules', 'create', 'x', '--cron', '* * * * *', '--run-at', 'now']);
    expect(runAt.stderr).toMatch(/run-at/);
    const action = await sfw(api, ['schedules', 'pause', 'x']);
    expect(action.stderr).toMatch(/unknown action "pause": use list, get, create/);
  });
});
