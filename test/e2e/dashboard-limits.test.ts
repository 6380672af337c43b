import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { waitFor } from '../helpers/wait.js';

/** The dashboard's Limits view in Chromium, against a real API: live numbers, set and delete. */

let api: TestApi;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  api = await startTestApi('dashboard-limits');
  browser = await chromium.launch({
    executablePath: await requireChromium(),
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 700 } });
});
afterAll(async () => {
  await browser?.close();
  await api?.stop();
});

describe('dashboard limits', () => {
  it('shows each limit with its running and waiting sessions, sets one and deletes one', async () => {
    await api.client.putLimit('shop.example', { concurrency: 1 });
    await api.client.createSessions(
      Array.from({ length: 3 }, () => ({ type: 'shop', concurrencyKey: 'shop.example' })),
    );
    await api.runnerClient.claim('dash-r', { slots: 3, types: ['shop'], maxConcurrency: 3 });

    await page.goto(api.url);
    await page.getByRole('link', { name: 'Limits' }).click();
    const rows = page.locator('#limits tbody tr');
    await waitFor(async () => (await rows.count()) === 1, { what: 'one limit' });
    expect((await page.locator('#limits thead th').allTextContents()).slice(0, 6)).toEqual([
      'Key',
      'Concurrency',
      'Per minute',
      'Running',
      'Waiting',
      'Claimed last minute',
    ]);
    expect((await rows.first().locator('td').allTextContents()).slice(0, 6)).toEqual([
      'shop.example',
      '1',
      '—',
      '1',
      '2',
      // Counted only for a limit with perMinute.
      '—',
    ]);

    // A new limit from the form.
    await page.getByLabel('Key').fill('api.example');
    await page.getByLabel('Per minute').fill('30');
    await page.getByRole('button', { name: 'Set' }).click();
    await waitFor(async () => (await rows.count()) === 2, { what: 'the new limit' });
    expect(await api.client.getLimit('api.example')).toMatchObject({ concurrency: null, perMinute: 30 });

    // Deleting one lets its waiting sessions go.
    page.once('dialog', (d) => void d.accept());
    await rows.filter({ hasText: 'shop.example' }).getByRole('button', { name: 'Delete' }).click();
    await waitFor(async () => (await rows.count()) === 1, { what: 'the deleted limit gone' });
    const { sessions } = await api.runnerClient.claim('dash-r2', {
      slots: 5,
      types: ['shop'],
      maxConcurrency: 5,
    });
    expect(sessions).toHaveLength(2);
  }, 60_000);
});
