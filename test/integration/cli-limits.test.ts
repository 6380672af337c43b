import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { sfwFromSources } from '../helpers/sfw-cli.js';

/** `sfw limits …` from the sources (node + tsx), against a real API. */

const sfw = (api: TestApi, args: string[]) => sfwFromSources(api.url, args);

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi('cli-limits');
});
afterAll(async () => {
  await api.stop();
});

describe('sfw limits', () => {
  it('sets, lists, shows and deletes a limit, with the waiting sessions it holds back', async () => {
    const set = await sfw(api, ['limits', 'set', 'shop.example', '--concurrency', '1', '--per-minute', '60']);
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    expect(set.stdout).toMatch(/key +shop\.example/);
    expect(set.stdout).toMatch(/concurrency +1/);
    expect(set.stdout).toMatch(/per minute +60/);

    // Three sessions enqueued with sfw enqueue --concurrency-key; a runner with room for all takes one.
    for (let i = 0; i < 3; i++) {
      const e = await sfw(api, ['enqueue', 'shop', '--concurrency-key', 'shop.example']);
      expect(e.code, e.stderr).toBe(0);
    }
    const { sessions } = await api.runnerClient.claim('cli-r', {
      slots: 3,
      types: ['shop'],
      maxConcurrency: 3,
    });
    expect(sessions).toHaveLength(1);

    const list = await sfw(api, ['limits', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(
      /^KEY +CONCURRENCY +PER MINUTE +RUNNING +WAITING +LAST MINUTE/,
    );
    expect(list.stdout).toMatch(/shop\.example +1 +60 +1 +2 +1/);
    const json = await sfw(api, ['limits', 'get', 'shop.example', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ key: 'shop.example', running: 1, waiting: 2 });

    const del = await sfw(api, ['limits', 'delete', 'shop.example']);
    expect(del.code).toBe(0);
    expect(del.stdout).toContain(
      'deleted the limit of shop.example; its 2 waiting sessions are queued again',
    );
    const gone = await sfw(api, ['limits', 'get', 'shop.example']);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain('limit shop.example not found');
  }, 120_000);

  it('says what is wrong with the arguments', async () => {
    const none = await sfw(api, ['limits', 'set', 'a.example']);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('set needs --concurrency, --per-minute or both');
    const bad = await sfw(api, ['limits', 'set', 'a.example', '--concurrency', '0']);
    expect(bad.stderr).toContain('--concurrency must be between 1 and 100000, got 0');
    const action = await sfw(api, ['limits', 'raise']);
    expect(action.stderr).toContain('unknown action "raise": use list, set, get, delete');
    expect((await api.client.listLimits()).items).toEqual([]);
  }, 60_000);
});
