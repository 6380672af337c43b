import { createServer, type Server } from 'node:http';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The loopback quick start (no tokens) against what a web page can do in a real Chromium: another site's
 * forms and no-cors fetches (CSRF), a name rebound to 127.0.0.1 (DNS rebinding), and the dashboard's own
 * pages under their Content-Security-Policy.
 */

let api: TestApi;
let apiPort = 0;
let browser: Browser;
let context: BrowserContext;
let attacker: Server;
let attackerPort = 0;
let target = '';

/** The attacker's page: a plain form, a text/plain form spelling JSON, and no-cors fetches, all at once. */
function attackPage(apiBase: string, id: string): string {
  return `<!doctype html><html><body>
<form id="cancel" method="POST" action="${apiBase}/v1/sessions/${id}/cancel" target="sink1"></form>
<form id="enqueue" method="POST" enctype="text/plain" action="${apiBase}/v1/sessions" target="sink2">
  <input name='{"type":"csrf","input":{"x":"' value='"}}'>
</form>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<script>
  window.done = 0;
  for (const f of ['sink1', 'sink2']) document.querySelector('iframe[name=' + f + ']').onload = () => window.done++;
  document.getElementById('cancel').submit();
  document.getElementById('enqueue').submit();
  const settle = () => window.done++;
  fetch('${apiBase}/v1/sessions/${id}/cancel', { method: 'POST', mode: 'no-cors' }).then(settle, settle);
  fetch('${apiBase}/v1/sessions', { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' },
    body: JSON.stringify({ type: 'csrf' }) }).then(settle, settle);
  fetch('${apiBase}/v1/config/scheduler', { method: 'PUT', mode: 'no-cors', body: '{"maxConcurrency":99}' }).then(settle, settle);
</script></body></html>`;
}

beforeAll(async () => {
  api = await startTestApi('browser_attacks');
  apiPort = Number(new URL(api.url).port);
  target = (await api.client.createSession({ type: 'victim', input: { keep: true } })).id;
  attacker = createServer((req, res) => {
    const apiBase = new URL(req.url ?? '/', 'http://x').searchParams.get('api') ?? api.url;
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(attackPage(apiBase, target));
  });
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
  const addr = attacker.address();
  attackerPort = typeof addr === 'object' && addr ? addr.port : 0;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    // Every *.test name resolves to this machine: another site, and a rebound name, both at 127.0.0.1.
    // Chromium's own Local Network Access checks are off: the server must hold without them (other
    // browsers have none).
    args: [
      '--no-sandbox',
      '--disable-dev-shm-usage',
      '--host-resolver-rules=MAP *.test 127.0.0.1',
      '--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessRespectPreflightResults',
    ],
  });
  context = await browser.newContext();
});

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => attacker?.close(r));
  await api?.stop();
});

/** Loads the attack from `origin`, waits for all five requests to settle; answers the API's statuses. */
async function attackFrom(origin: string, apiBase = api.url): Promise<number[]> {
  const page = await context.newPage();
  const statuses: number[] = [];
  page.on('response', (r) => {
    if (r.url().startsWith(apiBase)) statuses.push(r.status());
  });
  await page.goto(`${origin}/attack?api=${encodeURIComponent(apiBase)}`);
  await waitFor(async () => (await page.evaluate(() => (window as unknown as { done: number }).done)) >= 5, {
    what: 'the forms and fetches to settle',
  });
  await page.close();
  return statuses;
}

async function unchanged(): Promise<void> {
  expect((await api.client.getSession(target)).status).toBe('queued');
  const { rows } = await api.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM sessions WHERE type = 'csrf'`,
  );
  expect(rows[0]!.n).toBe(0);
  expect((await api.client.getSchedulerConfig()).maxConcurrency).not.toBe(99);
}

describe('another site in Chromium', () => {
  it('cannot cancel, enqueue or reconfigure through forms or no-cors fetches (cross-site)', async () => {
    const statuses = await attackFrom(`http://attacker.test:${attackerPort}`);
    // The form posts are the ones Chromium reports (no-cors answers are opaque).
    expect(statuses.length).toBeGreaterThanOrEqual(2);
    for (const s of statuses) expect([403, 415]).toContain(s);
    await unchanged();
  });

  it('cannot either from another port of the same machine (same-site, another origin)', async () => {
    const statuses = await attackFrom(`http://127.0.0.1:${attackerPort}`);
    for (const s of statuses) expect([403, 415]).toContain(s);
    await unchanged();
  });

  it('cannot read or change anything through a name rebound to 127.0.0.1 (DNS rebinding)', async () => {
    const page = await context.newPage();
    const rebound = `http://rebind.test:${apiPort}`;
    // The attacker's page came from rebind.test before the name was pointed at 127.0.0.1; its own
    // requests now reach the API, same-origin as far as the browser knows.
    await page.route(`${rebound}/`, (route) =>
      route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>rebound</title>' }),
    );
    await page.goto(`${rebound}/`);
    const seen = await page.evaluate(async (id) => {
      const read = await fetch('/v1/queue');
      const cancel = await fetch(`/v1/sessions/${id}/cancel`, { method: 'POST' });
      const create = await fetch('/v1/sessions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'csrf' }),
      });
      return { read: read.status, body: await read.text(), cancel: cancel.status, create: create.status };
    }, target);
    await page.close();
    expect(seen).toMatchObject({ read: 421, cancel: 421, create: 421 });
    expect(JSON.parse(seen.body)).toMatchObject({ error: { code: 'HOST_NOT_ALLOWED' } });
    await unchanged();
  });
});

describe('the dashboard under its Content-Security-Policy', () => {
  it('works without a single violation: charts, lists, step bars, a screenshot, settings', async () => {
    // A session with steps and a real screenshot, so the session view draws its bars and a blob: image.
    const shotPage = await browser.newPage({ viewport: { width: 320, height: 200 } });
    await shotPage.setContent('<h1>shot</h1>');
    const png = await shotPage.screenshot();
    await shotPage.close();
    const s = await api.client.createSession({ type: 'shown' });
    const { sessions } = await api.runnerClient.claim('csp-runner', { slots: 1, types: ['shown'] });
    await api.runnerClient.uploadArtifact(s.id, 'page.png', sessions[0]!.leaseToken, png, 'image/png');
    await api.runnerClient.complete(s.id, {
      leaseToken: sessions[0]!.leaseToken,
      status: 'succeeded',
      result: {
        steps: [
          { action: 'goto', ok: true, ms: 300 },
          { action: 'click', ok: true, ms: 40 },
        ],
      },
    });

    const page: Page = await context.newPage();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
    });
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        const w = window as unknown as { cspViolations?: string[] };
        (w.cspViolations ??= []).push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`);
      });
    });
    const response = await page.goto(`${api.url}/`);
    expect(response?.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    // The charts' legend swatches were inline styles once.
    await page.locator('#chart-throughput .legend svg.swatch rect').first().waitFor();
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.locator('#sessions tbody tr').first().waitFor();
    await page.goto(`${api.url}/#/sessions/${s.id}`);
    await waitFor(async () => (await page.locator('#steps svg.bar').count()) === 2, {
      what: 'two step bars',
    });
    expect(await page.locator('#steps svg.bar').first().getAttribute('width')).toBe('160');
    const img = page.getByAltText(/Screenshot page\.png/);
    await waitFor(() => img.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth === 320), {
      what: 'the screenshot to load from a blob: URL',
    });
    await page.getByRole('link', { name: 'Runners' }).click();
    await page.locator('#runners tbody tr').first().waitFor();
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByLabel('Max concurrency per runner').fill('4');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved: max concurrency 4').waitFor();
    const reported = await page.evaluate(
      () => (window as unknown as { cspViolations?: string[] }).cspViolations ?? [],
    );
    await page.close();
    expect([...violations, ...reported]).toEqual([]);
  });
});
