import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { StorageState } from '@session-framework/sdk';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { waitFor } from '../helpers/wait.js';

/** The dashboard's States view and a session's named state, in Chromium against a real API. */

let api: TestApi;
let browser: Browser;
let page: Page;
const SHOTS = process.env.SFW_UPDATE_SCREENSHOTS
  ? path.resolve('docs/images')
  : await mkdtemp(path.join(os.tmpdir(), 'sfw-dashboard-states-'));
const COOKIE = 'dashboard-secret-cookie-value';

const storage: StorageState = {
  cookies: [{ name: 'sid', value: COOKIE, domain: 'shop.example', path: '/', expires: -1 }],
  origins: [{ origin: 'https://shop.example', localStorage: [{ name: 'theme', value: 'dark' }] }],
};

beforeAll(async () => {
  api = await startTestApi('dashboard-states', { deps: { states: { encryptionKey: Buffer.alloc(32, 7) } } });
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

/** A saved version of `name` by a session claimed and completed by hand. */
async function save(name: string): Promise<string> {
  const s = await api.client.createSession({ type: 'login', state: { save: name } });
  const { sessions } = await api.runnerClient.claim('dash-runner', {
    slots: 1,
    types: ['login'],
    maxConcurrency: 5,
  });
  const c = sessions[0]!;
  await api.runnerClient.saveSessionState('dash-runner', c.id, {
    leaseToken: c.leaseToken,
    storageState: storage,
  });
  await api.runnerClient.complete(c.id, { leaseToken: c.leaseToken, status: 'succeeded' });
  return s.id;
}

describe('dashboard states', () => {
  it('lists named states with version, size and encryption, shows versions, deletes one; a session links its state', async () => {
    await save('shop-login');
    const last = await save('shop-login');
    await save('crm-login');

    await page.goto(api.url);
    await page.getByRole('link', { name: 'States' }).click();
    const rows = page.locator('#states tbody tr');
    await waitFor(async () => (await rows.count()) === 2, { what: 'two states' });
    expect((await page.locator('#states thead th').allTextContents()).slice(0, 7)).toEqual([
      'Name',
      'Version',
      'Size',
      'At rest',
      'Updated',
      'By session',
      'Expires',
    ]);
    const shop = await rows.nth(1).locator('td').allTextContents();
    expect(shop[0]).toBe('shop-login');
    expect(shop[1]).toBe('2');
    expect(shop[3]).toBe('encrypted');
    expect(shop[6]).toBe('never');
    expect(await page.content()).not.toContain(COOKIE);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-states.png') });

    await rows.nth(1).getByRole('link', { name: 'shop-login' }).click();
    const versions = page.locator('#state-versions tbody tr');
    await waitFor(async () => (await versions.count()) === 2, { what: 'two versions' });
    expect(await versions.nth(0).locator('td').first().textContent()).toBe('2');

    // The session that saved it shows the state and what became of its save.
    await page.goto(`${api.url}/#/sessions/${last}`);
    const state = page.locator('#session-state');
    await waitFor(async () => (await state.count()) === 1, { what: 'the session’s named state' });
    expect(await state.textContent()).toContain('saves shop-login (saved version 2)');

    await page.goto(`${api.url}/#/states`);
    await waitFor(async () => (await rows.count()) === 2, { what: 'two states' });
    page.once('dialog', (d) => void d.accept());
    await rows.nth(0).getByRole('button', { name: 'Delete' }).click();
    await waitFor(async () => (await rows.count()) === 1, { what: 'the deleted state to go' });
    expect((await api.client.listStates()).items.map((s) => s.name)).toEqual(['shop-login']);
  });
});
