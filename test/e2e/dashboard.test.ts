import { createReadStream } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SfwClient } from '@session-framework/sdk';
import { Runner } from '../../src/runner/runner.js';
import { API_TOKEN, RUNNER_TOKEN, startTestApi, type TestApi } from '../helpers/api.js';
import { sleepExecutor } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
// SFW_UPDATE_SCREENSHOTS=1 writes the README's screenshots to docs/images; otherwise to a temp folder.
const SHOTS = process.env.SFW_UPDATE_SCREENSHOTS
  ? fileURLToPath(new URL('../../docs/images/', import.meta.url))
  : await mkdtemp(path.join(os.tmpdir(), 'sfw-dashboard-shots-'));

let api: TestApi;
let browser: Browser;
let page: Page;
let fixtures: Server;
let fixturesUrl = '';
let runner: Runner | undefined;
let runnerClient: SfwClient | undefined;
const ids: Record<string, string> = {};

async function serveFixtures(): Promise<void> {
  fixtures = createServer((req, res) => {
    const file = path.join(FIXTURES, path.basename(req.url ?? '/'));
    res.setHeader('content-type', 'text/html; charset=utf-8');
    createReadStream(file)
      .on('error', () => {
        res.statusCode = 404;
        res.end();
      })
      .pipe(res);
  });
  await new Promise<void>((resolve) => fixtures.listen(0, '127.0.0.1', resolve));
  const addr = fixtures.address();
  fixturesUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

/** Claims one session of `type` for `runnerId` (the runner protocol, as a runner does it). */
async function claimOne(runnerId: string, type: string) {
  const { sessions } = await api.runnerClient.claim(runnerId, { slots: 1, types: [type], maxConcurrency: 3 });
  const s = sessions[0];
  if (!s) throw new Error(`nothing of type ${type} to claim`);
  return s;
}

async function seed(): Promise<void> {
  await api.runnerClient.heartbeat('runner-eu-1', {
    activeSessions: 0,
    maxConcurrency: 3,
    sessions: [],
    hostname: 'eu-node-1',
    version: '0.1.0',
    memoryRssBytes: 180 * 1024 * 1024,
    browserMemoryBytes: 620 * 1024 * 1024,
    types: ['checkout', 'scrape'],
  });
  // A succeeded flow-like session with step timings.
  await api.client.createSession({ type: 'checkout', input: { sku: 'trail-shoes' } });
  const ok = await claimOne('runner-eu-1', 'checkout');
  await api.runnerClient.complete(ok.id, {
    leaseToken: ok.leaseToken,
    status: 'succeeded',
    result: {
      extracted: { total: '89.00 €' },
      steps: [
        { action: 'goto', ok: true, ms: 412 },
        { action: 'click', ok: true, ms: 96 },
        { action: 'extract', ok: true, ms: 12 },
      ],
    },
  });
  ids.ok = ok.id;

  // A failed session with a real screenshot taken by Chromium from a fixture page, and a trace file.
  await api.client.createSession({ type: 'checkout', input: { sku: 'trail-shoes', card: 'visa' } });
  const bad = await claimOne('runner-eu-1', 'checkout');
  const shotPage = await browser.newPage({ viewport: { width: 640, height: 360 } });
  await shotPage.goto(`${fixturesUrl}/checkout-broken.html`);
  const png = await shotPage.screenshot();
  await shotPage.close();
  await api.runnerClient.uploadArtifact(bad.id, 'failure.png', bad.leaseToken, png);
  await api.runnerClient.uploadArtifact(bad.id, 'trace.zip', bad.leaseToken, Buffer.from('PK\u0005\u0006'));
  await api.runnerClient.complete(bad.id, {
    leaseToken: bad.leaseToken,
    status: 'failed',
    errorMessage: 'assert #pay: expected to be enabled',
    result: {
      steps: [
        { action: 'goto', ok: true, ms: 380 },
        { action: 'assert', ok: false, ms: 5004 },
      ],
    },
  });
  ids.bad = bad.id;

  // Queued sessions of two types (enough for a second page) and one running on a silent runner.
  await api.client.createSessions([
    ...Array.from({ length: 28 }, (_, i) => ({ type: 'scrape', input: { page: i } })),
    { type: 'report', priority: 5 },
  ]);
  const running = await claimOne('runner-us-2', 'report');
  ids.running = running.id;
  await api.db.query(
    `UPDATE runner_health SET last_heartbeat = now() - interval '3 minutes' WHERE runner_id = 'runner-us-2'`,
  );
  ids.queued = (await api.client.createSession({ type: 'newsletter', input: { to: 'all' } })).id;
}

/** For the README's screenshots only: an hour of sample queue flow, so the charts show a shape. */
async function sampleHistory(): Promise<void> {
  await api.db.query(
    `INSERT INTO session_minute_stats (minute, shard, entered_queue, left_queue, claimed, claim_wait_sum, finished, failed)
     SELECT date_trunc('minute', now()) - make_interval(mins => m), 7, e, e - d, e - d, (e - d) * w, e - d, f
     FROM (SELECT m, (60 + 45 * sin(m / 9.0))::int AS e, (CASE WHEN m BETWEEN 31 AND 41 THEN 9 WHEN m BETWEEN 20 AND 30 THEN -9 ELSE 0 END) AS d,
                  0.4 + 3 * greatest(0, sin(m / 9.0)) AS w, (3 + 4 * greatest(0, cos(m / 7.0)))::int AS f
           FROM generate_series(1, 59) AS m) x`,
  );
}

beforeAll(async () => {
  api = await startTestApi('dashboard', { auth: true });
  if (process.env.SFW_UPDATE_SCREENSHOTS) await sampleHistory();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  await serveFixtures();
  await seed();
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
});

afterAll(async () => {
  await runner?.stop();
  await runnerClient?.close();
  await browser?.close();
  await new Promise((r) => fixtures?.close(r));
  await api?.stop();
});

describe('dashboard in Chromium', () => {
  it('asks for the token when the API requires one, then shows the overview with charts and alerts', async () => {
    await page.goto(api.url);
    await page.getByLabel('API token').fill(API_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.locator('#chart-depth svg path.line').waitFor();
    await expect(page.locator('#chart-throughput desc').textContent()).resolves.toMatch(/finished: now \d+/);
    // The silent runner makes RunnerDown show in the banner.
    await expect(page.locator('#alerts').textContent()).resolves.toContain('RunnerDown');
    await expect(page.locator('#card-queued').textContent()).resolves.toContain('29');
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-overview.png') });
  });

  it('lists sessions with filters and paging, and shows new sessions live', async () => {
    await page.getByRole('link', { name: 'Sessions' }).click();
    const rows = page.locator('#sessions tbody tr');
    await waitFor(async () => (await rows.count()) === 25, { what: 'first page of 25' });
    await page.getByRole('button', { name: 'Older →' }).click();
    await waitFor(async () => (await rows.count()) === 7, { what: 'second page of the 32 sessions' });
    await page.getByRole('button', { name: '← Newer' }).click();
    await waitFor(async () => (await rows.count()) === 25, { what: 'back on the first page' });

    await page.getByLabel('Status').selectOption('failed');
    await waitFor(async () => (await rows.count()) === 1, { what: 'only the failed session' });
    await expect(rows.first().textContent()).resolves.toContain('failed');
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Type').fill('checkout');
    await page.getByLabel('Type').press('Enter');
    await waitFor(async () => (await rows.count()) === 2, { what: 'the two checkout sessions' });
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-sessions.png') });

    const fresh = await api.client.createSession({ type: 'checkout', input: { sku: 'socks' } });
    await page.locator(`a[href="#/sessions/${fresh.id}"]`).waitFor({ timeout: 10_000 });
    await api.client.cancelSession(fresh.id);
  });

  it('opens a failed session: error, step timings, the screenshot inline and the trace hint', async () => {
    await page.goto(`${api.url}/#/sessions/${ids.bad}`);
    await expect(page.locator('#session-error').textContent()).resolves.toContain('expected to be enabled');
    await waitFor(async () => (await page.locator('#steps tbody tr').count()) === 2, { what: 'two steps' });
    const img = page.getByAltText(/Screenshot failure\.png/);
    await waitFor(() => img.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth === 640), {
      what: 'the screenshot to load',
    });
    await expect(page.locator('.files').textContent()).resolves.toContain(
      'npx playwright show-trace trace.zip',
    );
    await expect(page.locator('#attempts tbody tr').count()).resolves.toBe(1);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-session.png'), fullPage: true });
  });

  it('shows the runners with heartbeat age, load, memory and a down runner', async () => {
    await page.getByRole('link', { name: 'Runners' }).click();
    const eu = page.locator('#runners tbody tr', { hasText: 'runner-eu-1' });
    await eu.waitFor();
    const text = await eu.textContent();
    expect(text).toContain('up');
    expect(text).toContain('180.0 MB');
    expect(text).toContain('50.0%');
    await expect(
      page.locator('#runners tbody tr', { hasText: 'runner-us-2' }).locator('.badge').textContent(),
    ).resolves.toBe('down');
    // Every cell sits under its own header.
    const byHeader = await page.locator('#runners').evaluate((t: HTMLTableElement) => {
      const text = (c: Element) => c.textContent?.trim() ?? '';
      const heads = Array.from(t.querySelectorAll('thead th'), text);
      return Array.from(t.querySelectorAll('tbody tr'), (row) => {
        const cells = Array.from(row.querySelectorAll('td'), text);
        const byHead: Record<string, string | undefined> = {};
        heads.forEach((h, i) => (byHead[h] = cells[i]));
        return { width: cells.length, cells: byHead };
      });
    });
    const heads = await page.locator('#runners thead th').count();
    for (const row of byHeader) expect(row.width).toBe(heads);
    const euCells = byHeader.find((r) => r.cells.Runner === 'runner-eu-1')!.cells;
    expect(euCells).toMatchObject({
      'Active / max': '0 / 3',
      Claimed: '0',
      'Memory (runner / browsers)': '180.0 MB / 620.0 MB',
      Executed: '2',
      Failures: '1',
      'Failure rate': '50.0%',
      Types: 'checkout, scrape',
      Host: 'eu-node-1',
      Version: '0.1.0',
    });
    expect(byHeader.find((r) => r.cells.Runner === 'runner-us-2')!.cells).toMatchObject({
      Claimed: '1',
      Types: '—',
    });
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-runners.png') });

    // A runner's name opens the sessions it ran.
    await eu.getByRole('link', { name: 'runner-eu-1' }).click();
    await expect(page.getByLabel('Runner').inputValue()).resolves.toBe('runner-eu-1');
    await waitFor(async () => (await page.locator('#sessions tbody tr').count()) === 2, {
      what: "runner-eu-1's two sessions",
    });
  });

  it('cancels a queued session and re-runs it from the UI', async () => {
    await page.goto(`${api.url}/#/sessions/${ids.queued}`);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByText('Cancelled.').waitFor();
    expect((await api.client.getSession(ids.queued!)).status).toBe('cancelled');
    await page.locator('h2 .badge', { hasText: 'cancelled' }).waitFor();

    await page.getByRole('button', { name: 'Re-run' }).click();
    await waitFor(
      () => !location(page).includes(ids.queued!) && /#\/sessions\/[0-9a-f-]{36}$/.test(location(page)),
      {
        what: 'navigation to the new session',
      },
    );
    const newId = location(page).split('/').pop()!;
    const copy = await api.client.getSession(newId);
    expect(copy.type).toBe('newsletter');
    expect(copy.input).toEqual({ to: 'all' });
    expect(copy.status).toBe('queued');
  });

  it('cancels a running session from the UI (the runner is told at its next heartbeat)', async () => {
    await page.goto(`${api.url}/#/sessions/${ids.running}`);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByText('Cancel requested').first().waitFor();
    const s = await api.client.getSession(ids.running!);
    expect(s.cancelRequested).toBe(true);
  });

  it('changes max_concurrency in the settings and a real runner follows it', async () => {
    runnerClient = new SfwClient({ baseUrl: api.url, token: RUNNER_TOKEN, retries: 0, timeoutMs: 10_000 });
    runner = new Runner({
      client: runnerClient,
      runnerId: 'runner-follow',
      types: [{ name: 'sleep', browser: false }],
      executor: sleepExecutor,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 500,
      heartbeatIntervalMs: 200,
      backoffMs: 50,
      maxBackoffMs: 500,
    });
    await runner.start();
    await page.getByRole('link', { name: 'Settings' }).click();
    const input = page.getByLabel('Max concurrency per runner');
    await waitFor(async () => (await input.inputValue()) === '3', { what: 'the current value' });
    await input.fill('7');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved: max concurrency 7').waitFor();
    expect((await api.client.getSchedulerConfig()).maxConcurrency).toBe(7);
    await waitFor(() => runner!.maxConcurrency === 7, { what: 'the runner to follow scheduler_config' });
    await waitFor(
      async () =>
        (await api.client.runners()).find((r) => r.runnerId === 'runner-follow')?.maxConcurrency === 7,
      { what: 'runner_health.max_concurrency to show 7' },
    );
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-settings.png') });
  });

  it('can be used with the keyboard alone', async () => {
    await page.goto(`${api.url}/#/`);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    // Skip link, title, then the navigation: Runners is reached in a few presses of Tab.
    const focused = () => page.evaluate(() => document.activeElement?.textContent?.trim());
    for (let i = 0; i < 8 && (await focused()) !== 'Runners'; i++) await page.keyboard.press('Tab');
    expect(await focused()).toBe('Runners');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Runners' }).waitFor();
  });
});

const location = (p: Page) => p.url();
