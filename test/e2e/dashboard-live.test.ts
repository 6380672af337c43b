import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { API_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { killAll, spawnBrowserRunner, type SfwProcess } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The dashboard's live view in Chromium: a real API, a real `sfw runner` with its own Chromium running a
 * flow on the fixture site's ticker page, and the session's page in the dashboard showing it live.
 */

let api: TestApi;
let site: FixtureServer;
let runner: SfwProcess;
let browser: Browser;
let page: Page;
const SHOTS = process.env.SFW_UPDATE_SCREENSHOTS
  ? path.resolve('docs/images')
  : await mkdtemp(path.join(os.tmpdir(), 'sfw-dashboard-live-'));

beforeAll(async () => {
  const chromiumPath = await requireChromium();
  site = await startFixtureServer();
  api = await startTestApi('dashboard-live', { auth: true });
  runner = spawnBrowserRunner(api.url, 'dash-live-runner', chromiumPath);
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  if (runner) await killAll([runner]);
  await api?.stop();
  await site?.close();
});

describe('dashboard live view', () => {
  it("shows a running session's page live on demand, and stops when asked", async () => {
    const s = await api.client.createSession({
      type: 'flow',
      input: {
        steps: [
          { action: 'goto', url: `${site.url}/pages/ticker.html` },
          { action: 'waitFor', ms: 60_000 },
        ],
      },
      browser: { viewport: { width: 800, height: 600 } },
      timeoutMs: 90_000,
    });
    await waitFor(async () => (await api.client.getSession(s.id)).status === 'running', {
      timeoutMs: 60_000,
      what: 'session running',
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${runner.output().slice(-3000)}`);
    });

    await page.goto(`${api.url}/#/sessions/${s.id}`);
    await page.getByLabel('API token').fill(API_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const watch = page.getByRole('button', { name: 'Watch live' });
    await watch.waitFor();
    // On demand: nothing is captured before the button is pressed.
    expect(api.app.live.sourceCount(s.id)).toBe(0);
    await watch.click();

    const frame = page.locator('#live-frame');
    await frame.waitFor({ state: 'visible', timeout: 20_000 });
    await waitFor(async () => (await frame.evaluate((img: HTMLImageElement) => img.naturalWidth)) === 800, {
      what: 'a frame of the page',
    });
    await expect(page.locator('#live-state').textContent()).resolves.toBe('Live');
    await expect(page.locator('#live-caption').textContent()).resolves.toContain('/pages/ticker.html');
    // Frames keep coming: the picture changes as the ticker repaints.
    const first = await frame.getAttribute('src');
    await waitFor(async () => (await frame.getAttribute('src')) !== first, { what: 'a newer frame' });
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-live.png') });

    await page.getByRole('button', { name: 'Stop watching' }).click();
    await waitFor(() => api.app.live.sourceCount(s.id) === 0, { timeoutMs: 10_000, what: 'capture stopped' });

    // The session ends: the panel goes with it.
    await api.client.cancelSession(s.id);
    await page.locator('#live').waitFor({ state: 'detached', timeout: 20_000 });
  }, 120_000);
});
