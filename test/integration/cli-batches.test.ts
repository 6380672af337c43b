import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { sfwFromSources } from '../helpers/sfw-cli.js';

/** `sfw enqueue --tag`, `sfw wait --tag`, `sfw export`, `sfw cancel --tag` as processes against a real API. */

const run = (api: TestApi, args: string[]) => sfwFromSources(api.url, args);

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi('cli-batches');
});
afterAll(async () => {
  await api.stop();
});

/** Claims and ends every queued session of `type` as a runner would. */
async function finishAll(type: string, status: (i: number) => 'succeeded' | 'failed' = () => 'succeeded') {
  const { sessions } = await api.runnerClient.claim(`cli-runner-${type}`, { slots: 100, types: [type] });
  for (const [i, s] of sessions.entries())
    await api.runnerClient.complete(s.id, { leaseToken: s.leaseToken, status: status(i) });
  return sessions.length;
}

describe('sfw enqueue --tag and sfw wait --tag', () => {
  it('tags every copy with each --tag', async () => {
    const r = await run(api, [
      'enqueue',
      'cli-a',
      '--count',
      '3',
      '--tag',
      'cli-batch',
      '--tag',
      'team:web',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const { ids } = JSON.parse(r.stdout) as { ids: string[] };
    expect(ids).toHaveLength(3);
    for (const id of ids) expect((await api.client.getSession(id)).tags).toEqual(['cli-batch', 'team:web']);
    const list = await run(api, ['sessions', '--tag', 'team:web', '--json']);
    expect((JSON.parse(list.stdout) as { items: unknown[] }).items).toHaveLength(3);
    const bad = await run(api, ['enqueue', 'cli-a', '--tag', 'has space']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('body.tags.0');
  });

  it('exits 1 at its timeout while sessions are still queued, saying how many', async () => {
    const r = await run(api, ['wait', '--tag', 'cli-batch', '--timeout-ms', '300']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('3 of 3 sessions still not final');
  });

  it('waits until the last session is final and exits 0 when none failed', async () => {
    const waiting = run(api, ['wait', '--tag', 'cli-batch']);
    // Still waiting a while after it started: nothing is final yet.
    const early = await Promise.race([waiting, new Promise((r) => setTimeout(() => r('waiting'), 2500))]);
    expect(early).toBe('waiting');
    expect(await finishAll('cli-a')).toBe(3);
    const r = await waiting;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('tag cli-batch: 3/3 final: 3 succeeded, 0 failed');
    // Not a terminal: plain progress lines on stderr.
    expect(r.stderr).toContain('tag cli-batch: 3/3');
  });

  it('exits 1 when any session of the tag failed', async () => {
    await api.client.createSessions([
      { type: 'cli-b', tags: ['cli-mixed'] },
      { type: 'cli-b', tags: ['cli-mixed'] },
    ]);
    await finishAll('cli-b', (i) => (i === 0 ? 'failed' : 'succeeded'));
    const r = await run(api, ['wait', '--tag', 'cli-mixed', '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      total: 2,
      done: true,
      byStatus: { failed: 1, succeeded: 1 },
    });
  });

  it('exits 1 for a tag no session carries, and 2 without --tag', async () => {
    const none = await run(api, ['wait', '--tag', 'nobody-has-it']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no session carries tag "nobody-has-it"');
    const missing = await run(api, ['wait']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('missing --tag');
  });
});

describe('sfw export and sfw cancel --tag', () => {
  it('writes the export to a file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-export-'));
    const file = path.join(dir, 'batch.csv');
    const r = await run(api, ['export', '--tag', 'cli-batch', '--format', 'csv', '-o', file]);
    expect(r.code, r.stderr).toBe(0);
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\r\n');
    expect(lines[0]).toBe(
      'id,type,status,tags,priority,createdAt,runAt,claimedAt,finishedAt,attempt,maxAttempts,claimedBy,result,errorMessage',
    );
    expect(lines).toHaveLength(4);
    for (const l of lines.slice(1)) expect(l).toContain(',cli-a,succeeded,cli-batch;team:web,');
    const stdout = await run(api, ['export', '--tag', 'cli-mixed', '--status', 'failed']);
    expect(stdout.code).toBe(0);
    expect(JSON.parse(stdout.stdout)).toMatchObject({ type: 'cli-b', status: 'failed' });
    const bad = await run(api, ['export', '--format', 'xml']);
    expect(bad.code).toBe(2);
  });

  it('cancels every queued session of a tag', async () => {
    await api.client.createSessions(Array.from({ length: 4 }, () => ({ type: 'cli-c', tags: ['cli-stop'] })));
    const r = await run(api, ['cancel', '--tag', 'cli-stop']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('cancelled 4 queued sessions; asked 0 running to stop');
    expect((await api.client.getTag('cli-stop')).byStatus.cancelled).toBe(4);
    const wait = await run(api, ['wait', '--tag', 'cli-stop']);
    expect(wait.code).toBe(0);
    const both = await run(api, ['cancel', '00000000-0000-7000-8000-000000000000', '--tag', 'x']);
    expect(both.code).toBe(2);
  });
});
