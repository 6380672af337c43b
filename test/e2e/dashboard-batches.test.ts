import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { waitFor } from '../helpers/wait.js';

/** The dashboard's batch views in Chromium, against a real API: a tag's progress, the tag filter, export. */

/** SFW_UPDATE_SCREENSHOTS=1 writes the screenshot into docs/images. */
const SHOTS = process.env.SFW_UPDATE_SCREENSHOTS
  ? fileURLToPath(new URL('../../docs/images/', import.meta.url))
  : await mkdtemp(path.join(os.tmpdir(), 'sfw-dashboard-batches-'));

let api: TestApi;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  api = await startTestApi('dashboard-batches');
  browser = await chromium.launch({
    executablePath: await requireChromium(),
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
});
afterAll(async () => {
  await browser?.close();
  await api?.stop();
});

const counts = async () =>
  Object.fromEntries(
    await page
      .locator('#batch-counts dd')
      .evaluateAll((dds) => dds.map((d) => [d.getAttribute('data-status'), Number(d.textContent)])),
  ) as Record<string, number>;

describe('dashboard batches', () => {
  it("follows a tag's sessions live, lists them by tag, exports and cancels the rest", async () => {
    const tag = 'run/7';
    await api.client.createSessions(Array.from({ length: 4 }, () => ({ type: 'dash-b', tags: [tag] })));
    await api.client.createSession({ type: 'dash-b', tags: ['other'] });
    const { sessions } = await api.runnerClient.claim('dash-r', { slots: 2, types: ['dash-b'] });
    await api.runnerClient.complete(sessions[0]!.id, {
      leaseToken: sessions[0]!.leaseToken,
      status: 'failed',
    });

    await page.goto(api.url);
    await page.getByRole('link', { name: 'Batches' }).click();
    await page.getByLabel('Tag', { exact: true }).fill(tag);
    await page.getByRole('button', { name: 'Follow' }).click();
    await waitFor(async () => (await page.locator('#batch-counts').count()) === 1, { what: 'the counts' });
    expect(await page.locator('#main h2').textContent()).toBe(`Batch ${tag}`);
    expect(await counts()).toMatchObject({ queued: 2, running: 1, failed: 1, succeeded: 0 });
    expect(await page.locator('#batch-summary').textContent()).toContain('1 of 4');
    // One bar segment per status present, sized by its count.
    const widths = await page
      .locator('.batch-bar .batch-seg')
      .evaluateAll((segs) =>
        segs.map((s) => [s.className, (s as HTMLElement).style.width] as [string, string]),
      );
    expect(widths).toEqual([
      ['batch-seg batch-failed', '25%'],
      ['batch-seg batch-running', '25%'],
      ['batch-seg batch-queued', '50%'],
    ]);

    // Live: the page follows the sessions as they end.
    await api.runnerClient.complete(sessions[1]!.id, {
      leaseToken: sessions[1]!.leaseToken,
      status: 'succeeded',
    });
    await waitFor(async () => (await counts()).succeeded === 1, { what: 'the live update' });
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-batches.png') });

    // The CSV export of the tag, downloaded.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    const csv = await readFile(await download.path(), 'utf8');
    const lines = csv.trimEnd().split('\r\n');
    expect(lines[0]!.startsWith('id,type,status,tags')).toBe(true);
    expect(lines).toHaveLength(5);
    expect(download.suggestedFilename()).toBe('sessions-run_7.csv');

    // The list filtered by the tag, from the batch view.
    await page.getByRole('link', { name: 'List its sessions' }).click();
    await waitFor(async () => (await page.locator('#sessions tbody tr').count()) === 4, {
      what: 'the tag list',
    });
    expect(await page.getByLabel('Tag', { exact: true }).inputValue()).toBe(tag);
    const [jsonl] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export JSON lines' }).click(),
    ]);
    const exported = (await readFile(await jsonl.path(), 'utf8')).trimEnd().split('\n');
    expect(exported).toHaveLength(4);
    await page.getByRole('link', { name: `Batch progress of ${tag}` }).click();
    await waitFor(async () => (await page.locator('#batch-cancel').count()) === 1, {
      what: 'the cancel button',
    });

    page.once('dialog', (d) => void d.accept());
    await page.locator('#batch-cancel').click();
    await waitFor(async () => (await counts()).cancelled === 2, { what: 'the queued ones cancelled' });
    expect((await api.client.getTag(tag)).byStatus).toMatchObject({ cancelled: 2, failed: 1, succeeded: 1 });
    expect((await api.client.getTag('other')).byStatus.queued).toBe(1);
  }, 60_000);
});
