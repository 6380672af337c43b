import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { waitFor } from '../helpers/wait.js';

/** The dashboard's Schedules view in Chromium, against a real API running the firing loop. */

let api: TestApi;
let browser: Browser;
let page: Page;
const SHOTS = process.env.SFW_UPDATE_SCREENSHOTS
  ? path.resolve('docs/images')
  : await mkdtemp(path.join(os.tmpdir(), 'sfw-dashboard-schedules-'));

beforeAll(async () => {
  api = await startTestApi('dashboard-schedules', { schedules: true });
  browser = await chromium.launch({
    executablePath: await requireChromium(),
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 600 } });
});
afterAll(async () => {
  await browser?.close();
  await api?.stop();
});

describe('dashboard schedules', () => {
  it('shows each schedule’s next run and last sessions with their status, and disables one', async () => {
    const every = await api.client.createSchedule({
      name: 'homepage-check',
      cron: '* * * * * *',
      overlap: 'allow',
      session: { type: 'http-check', input: { url: 'http://127.0.0.1/' } },
    });
    await api.client.createSchedule({
      name: 'nightly-report',
      cron: '0 3 * * *',
      timezone: 'Europe/Berlin',
      session: { type: 'report' },
    });
    await waitFor(async () => (await api.client.getSchedule(every.id)).recent.length >= 3, {
      what: 'three fires',
      timeoutMs: 10_000,
    });
    const [first] = (await api.client.getSchedule(every.id)).recent.slice(-1);
    await api.client.cancelSession(first!.id);

    await page.goto(api.url);
    await page.getByRole('link', { name: 'Schedules' }).click();
    const rows = page.locator('#schedules tbody tr');
    await waitFor(async () => (await rows.count()) === 2, { what: 'two schedules' });
    const headers = await page.locator('#schedules thead th').allTextContents();
    expect(headers.slice(0, 6)).toEqual([
      'Schedule',
      'Cron',
      'State',
      'Next run',
      'Last run',
      'Last sessions (newest first)',
    ]);
    const cells = (row: number) => rows.nth(row).locator('td').allTextContents();
    const home = await cells(0);
    expect(home[0]).toContain('homepage-check');
    expect(home[2]).toContain('enabled');
    expect(home[3]).toMatch(/in (< 1 s|\d s)|due now/);
    expect(home[5]).toMatch(/queued/);
    expect(home[5]).toMatch(/cancelled/);
    const nightly = await cells(1);
    expect(nightly[1]).toContain('Europe/Berlin');
    expect(nightly[5]).toBe('—');
    // A last session links to its own view.
    await expect(rows.nth(0).locator(`a[href="#/sessions/${first!.id}"]`).count()).resolves.toBe(1);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-schedules.png') });

    await rows.nth(0).getByRole('button', { name: 'Disable' }).click();
    await waitFor(async () => (await cells(0))[2]?.includes('disabled'), { what: 'the schedule disabled' });
    expect((await api.client.getSchedule(every.id)).enabled).toBe(false);
    expect((await cells(0))[3]).toBe('—');

    await rows.nth(0).locator('a', { hasText: 'homepage-check' }).click();
    const sessionRows = page.locator('#sessions tbody tr');
    await waitFor(async () => (await sessionRows.count()) >= 3, { what: 'the schedule’s sessions' });
    const listed = await api.client.listSessions({ scheduleId: every.id, fields: [] });
    expect(await sessionRows.count()).toBe(listed.items.length);

    // A scheduled session's own view names its schedule and fire time, linking back to its sessions.
    await page.goto(`${api.url}/#/sessions/${first!.id}`);
    const link = page.locator('dl.facts a', { hasText: 'fire time' });
    await link.waitFor();
    await expect(link.getAttribute('href')).resolves.toBe(`#/sessions?scheduleId=${every.id}`);
  });
});
