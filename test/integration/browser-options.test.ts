import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '@session-framework/sdk';
import { createLogger } from '../../src/core/log.js';
import type { BrowserOptions } from '../../src/protocol/schemas.js';
import type { SessionType } from '../../src/sessions/registry.js';
import { insertSessions } from '../../src/store/sessions.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { startBrowserTypeRunner, type BrowserTypeRunner } from '../helpers/browser-runner.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';

/**
 * A session's browser options end to end (API, Postgres, a runner with Chromium, the fixture site): each
 * takes effect in the session's context, bad ones are refused at enqueue with their path, and a proxy's
 * password shows neither in the answers nor in the logs (the proxy itself: browser-proxy.test.ts).
 */

let api: TestApi;
let site: FixtureServer;
let runner: BrowserTypeRunner;

interface Echo {
  userAgent: string;
  language: string;
  timeZone: string;
  width: number;
  height: number;
  js: string | null;
  headers: Record<string, string>;
}

/** Reads what the page sees of its browser, and the headers its requests carry. */
const echoType: SessionType = {
  name: 'browser-echo',
  kind: 'code',
  browser: true,
  reuseContext: true,
  source: 'test',
  validateInput: (input) => input,
  run: async (ctx) => {
    const page = 'page' in ctx ? ctx.page : undefined;
    if (!page) throw new Error('a browser session without a page');
    await page.goto(`${site.url}/pages/browser-echo.html`);
    const seen = await page.evaluate(() => ({
      userAgent: navigator.userAgent,
      language: navigator.language,
      timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      width: window.innerWidth,
      height: window.innerHeight,
    }));
    const js = await page.textContent('#js');
    await page.goto(`${site.url}/echo/headers`);
    const headers = JSON.parse((await page.textContent('body')) ?? '{}') as Record<string, string>;
    return { ...seen, js, headers } satisfies Echo;
  },
};

beforeAll(async () => {
  api = await startTestApi('browser_options');
  site = await startFixtureServer();
  runner = await startBrowserTypeRunner(api, 'browser-options-runner', echoType);
});

afterAll(async () => {
  await runner?.stop();
  await site?.close();
  await api?.stop();
});

async function echo(browser?: BrowserOptions): Promise<Echo> {
  const s = await api.client.createSession({ type: 'browser-echo', ...(browser ? { browser } : {}) });
  expect(s.browser).toEqual(browser ?? null);
  const done = await api.client.waitUntilDone(s.id, { timeoutMs: 30_000 });
  expect(done.errorMessage).toBeNull();
  expect(done.status).toBe('succeeded');
  expect(done.browser).toEqual(browser ?? null);
  return done.result as Echo;
}

async function refusal(browser: unknown): Promise<ApiError> {
  const err = await api.client
    .createSession({ type: 'browser-echo', browser: browser as BrowserOptions })
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ApiError);
  expect((err as ApiError).httpStatus).toBe(400);
  return err as ApiError;
}

describe('browser options of a session', () => {
  it('each option takes effect in the session context, and a session without them gets the defaults', async () => {
    const seen = await echo({
      viewport: { width: 817, height: 611 },
      locale: 'de-DE',
      timezoneId: 'America/Sao_Paulo',
      userAgent: 'sfw-test-agent/1.0',
      extraHTTPHeaders: { 'X-Sfw-Test': 'hello there' },
      javaScriptEnabled: false,
    });
    expect(seen.userAgent).toBe('sfw-test-agent/1.0');
    expect(seen.language).toBe('de-DE');
    expect(seen.timeZone).toBe('America/Sao_Paulo');
    expect({ width: seen.width, height: seen.height }).toEqual({ width: 817, height: 611 });
    expect(seen.js).toBe('off');
    expect(seen.headers['x-sfw-test']).toBe('hello there');
    expect(seen.headers['user-agent']).toBe('sfw-test-agent/1.0');
    expect(seen.headers['accept-language']).toMatch(/^de-DE/);

    // The same type again without options: its context has none of them (the first one was not kept).
    const plain = await echo();
    expect(plain.userAgent).not.toBe('sfw-test-agent/1.0');
    expect(plain.js).toBe('on');
    expect(plain.headers['x-sfw-test']).toBeUndefined();
    expect({ width: plain.width, height: plain.height }).not.toEqual({ width: 817, height: 611 });
  });

  it('refuses bad options at enqueue with the path of the field', async () => {
    const cases: [unknown, string][] = [
      [{ viewport: { width: 50, height: 600 } }, 'body.browser.viewport.width'],
      [{ viewport: { width: 800, height: 10_001 } }, 'body.browser.viewport.height'],
      [{ viewport: { width: 800 } }, 'body.browser.viewport.height'],
      [{ locale: 'not a locale' }, 'body.browser.locale'],
      [{ timezoneId: 'Mars/Olympus' }, 'body.browser.timezoneId'],
      [{ userAgent: 'bad\nagent' }, 'body.browser.userAgent'],
      [{ extraHTTPHeaders: { 'X-Ok': 'line\r\nInjected: 1' } }, 'body.browser.extraHTTPHeaders.X-Ok'],
      [{ javaScriptEnabled: 'yes' }, 'body.browser.javaScriptEnabled'],
      [{ proxy: { server: 'ftp://proxy.example:21' } }, 'body.browser.proxy.server'],
      [{ colour: 'red' }, 'body.browser.colour'],
    ];
    for (const [browser, path] of cases) {
      const err = await refusal(browser);
      expect({ browser, path: err.path }).toEqual({ browser, path });
    }
    const badName = await refusal({ extraHTTPHeaders: { 'Bad Name': 'x' } });
    expect(badName.path).toMatch(/^body\.browser\.extraHTTPHeaders/);
    const batch = await api.client
      .createSessions([
        { type: 'browser-echo' },
        { type: 'browser-echo', browser: { proxy: { server: 'socks5://proxy.example:1080' } } },
      ])
      .catch((e: unknown) => e);
    expect(batch).toBeInstanceOf(ApiError);
    expect((batch as ApiError).path).toBe('body.sessions.1.browser.proxy.server');
    expect((batch as ApiError).message).toMatch(/use http:\/\/host:port or https:\/\/host:port/);
  });

  it('accepts a per-session proxy and answers its password as [redacted], refusing a bad one without echoing it', async () => {
    const proxy = { server: 'http://proxy.example:3128', username: 'ada', password: 'hunter2-proxy' };
    // A type no runner serves: the session stays queued, only the answers are looked at.
    const created = await api.client.createSession({ type: 'not-served', browser: { proxy } });
    expect(created.browser?.proxy).toEqual({ ...proxy, password: '[redacted]' });
    expect(JSON.stringify(created)).not.toContain('hunter2-proxy');
    const err = await refusal({ proxy: { ...proxy, server: 'socks5://proxy.example:1080' } });
    expect(err.path).toBe('body.browser.proxy.server');
    expect(err.message).toMatch(/socks5:\/\/ proxies are not supported/);
    expect(JSON.stringify(err)).not.toContain('hunter2-proxy');
  });

  it('a stored proxy password shows as [redacted] in GET, and logged options never carry it', async () => {
    // A row written by the store itself, as enqueue stores it: shown redacted in GET and in lists.
    const [out] = await insertSessions(api.db, [
      {
        type: 'not-served',
        browser: { proxy: { server: 'http://proxy.example:3128', username: 'ada', password: 'hunter2-get' } },
      },
    ]);
    const got = await api.client.getSession(out!.row.id);
    expect(got.browser?.proxy).toEqual({
      server: 'http://proxy.example:3128',
      username: 'ada',
      password: '[redacted]',
    });
    expect(JSON.stringify(got)).not.toContain('hunter2-get');
    const list = await api.client.listSessions({ type: 'not-served' });
    expect(JSON.stringify(list)).not.toContain('hunter2-get');
    expect(list.items[0]?.browser?.proxy?.password).toBe('[redacted]');

    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const log = createLogger('info', {}, sink);
    const browser = { proxy: { server: 'http://p:1', password: 'hunter2-log' } };
    log.info({ browser }, 'options');
    log.info({ session: { browser } }, 'session');
    log.info({ body: { sessions: { browser } } }, 'batch item');
    await new Promise((r) => setTimeout(r, 50));
    const text = lines.join('');
    expect(text).toContain('options');
    expect(text).not.toContain('hunter2-log');
    expect(text).toContain('[redacted]');
  });
});
