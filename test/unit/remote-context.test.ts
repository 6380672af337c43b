import { describe, expect, it } from 'vitest';
import {
  applyDefaults,
  contextDefaults,
  encodeContextCreation,
  errorReply,
  mayCreateContext,
  parseContextCreation,
} from '../../src/runner/remote-context.js';

/**
 * The rewrite of a remote client's context-creating Playwright messages: the session's options as
 * defaults, the client's own fields winning, its proxy always handed back for routing, other messages
 * left alone.
 */

const msg = (o: unknown) => Buffer.from(JSON.stringify(o));
const newContext = (params: unknown, method = 'newContext') =>
  msg({ id: 7, guid: 'browser@1', method, params, metadata: { wallTime: 1 } });

describe('parseContextCreation', () => {
  it('takes newContext and newContextForReuse, and no other message', () => {
    expect(parseContextCreation(newContext({ viewport: { width: 500, height: 400 } }))).toMatchObject({
      message: { id: 7, method: 'newContext' },
      params: { viewport: { width: 500, height: 400 } },
    });
    expect(parseContextCreation(newContext({}, 'newContextForReuse'))?.message.method).toBe(
      'newContextForReuse',
    );
    expect(parseContextCreation(msg({ id: 1, guid: 'page@1', method: 'goto', params: { url: 'x' } }))).toBe(
      undefined,
    );
    // Named in a value, not the method: not a context.
    expect(
      parseContextCreation(msg({ id: 1, guid: 'page@1', method: 'evaluate', params: { s: 'newContext' } })),
    ).toBe(undefined);
    expect(parseContextCreation(Buffer.from('newContext {not json'))).toBe(undefined);
  });

  it('takes Playwright.newRequest too (refused on remote sessions)', () => {
    expect(
      parseContextCreation(msg({ id: 2, guid: 'Playwright', method: 'newRequest', params: {} }))?.method,
    ).toBe('newRequest');
  });

  it('sees a method name written with \\u escapes (the server decodes them)', () => {
    const sneaky = Buffer.from('{"id":3,"guid":"browser@1","method":"new\\u0043ontext","params":{}}');
    expect(sneaky.includes(Buffer.from('newContext'))).toBe(false);
    expect(parseContextCreation(sneaky)?.message.id).toBe(3);
  });

  it('looks no further than a substring for messages that cannot create a context', () => {
    expect(mayCreateContext(msg({ id: 1, method: 'goto', params: { url: 'http://x/' } }))).toBe(false);
    expect(mayCreateContext(newContext({}))).toBe(true);
  });
});

describe('applyDefaults', () => {
  const defaults = contextDefaults({
    viewport: { width: 640, height: 480 },
    locale: 'de-DE',
    userAgent: 'sfw-test',
    extraHTTPHeaders: { 'x-a': '1' },
    proxy: { server: 'http://proxy.example:3128', username: 'u', password: 'p' },
  });

  it('gives the session options where the client gave none, in protocol form', () => {
    const out = applyDefaults({}, defaults);
    expect(out.params).toEqual({
      viewport: { width: 640, height: 480 },
      locale: 'de-DE',
      userAgent: 'sfw-test',
      extraHTTPHeaders: [{ name: 'x-a', value: '1' }],
    });
    expect(out.upstream).toEqual({ server: 'http://proxy.example:3128', username: 'u', password: 'p' });
  });

  it("lets the client's own fields win, viewport: null included", () => {
    const out = applyDefaults({ viewport: { width: 300, height: 200 }, locale: 'fr-FR' }, defaults);
    expect(out.params.viewport).toEqual({ width: 300, height: 200 });
    expect(out.params.locale).toBe('fr-FR');
    expect(out.params.userAgent).toBe('sfw-test');
    const none = applyDefaults({ noDefaultViewport: true }, defaults);
    expect(none.params.viewport).toBe(undefined);
    expect(none.params.noDefaultViewport).toBe(true);
  });

  it("hands back the client's proxy (not the session's) for routing and drops it and its bypass from the params", () => {
    const out = applyDefaults(
      { proxy: { server: 'http://127.0.0.1:9', bypass: '127.0.0.1', username: 'me' } },
      defaults,
    );
    expect(out.upstream).toEqual({ server: 'http://127.0.0.1:9', username: 'me' });
    expect(out.params.proxy).toBe(undefined);
    expect(
      applyDefaults({ proxy: { server: 'http://127.0.0.1:9' } }, contextDefaults(null)).upstream,
    ).toEqual({ server: 'http://127.0.0.1:9' });
    expect(applyDefaults({}, contextDefaults(undefined)).upstream).toBe(undefined);
  });

  it("puts the session's state in each context unless the client gives its own", () => {
    const state = { cookies: [{ name: 'sid', value: 's', domain: '127.0.0.1', path: '/' }], origins: [] };
    const d = contextDefaults(undefined, state);
    expect(applyDefaults({}, d).params.storageState).toEqual(state);
    const own = { cookies: [], origins: [] };
    expect(applyDefaults({ storageState: own }, d).params.storageState).toBe(own);
  });
});

describe('encoding', () => {
  it('keeps the rest of the message and replaces its params', () => {
    const c = parseContextCreation(newContext({ locale: 'en-US' }))!;
    const out = JSON.parse(
      encodeContextCreation(c, { locale: 'en-US', viewport: null }).toString(),
    ) as unknown;
    expect(out).toEqual({
      id: 7,
      guid: 'browser@1',
      method: 'newContext',
      params: { locale: 'en-US', viewport: null },
      metadata: { wallTime: 1 },
    });
  });

  it('answers a refused context as a Playwright protocol error of the same id', () => {
    expect(JSON.parse(errorReply(7, 'no').toString())).toEqual({
      id: 7,
      error: { error: { message: 'no', name: 'Error', stack: '' } },
    });
  });
});
