import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { createLogger, lazyChild } from '../../src/core/log.js';

/**
 * JSON.parse keeps the last of two equal keys without a word; strict ingesters refuse the line. This
 * parser refuses it too, naming the key.
 */
function parseStrict(text: string): unknown {
  let at = 0;
  const fail = (why: string): never => {
    throw new Error(`${why} at ${at} in ${text}`);
  };
  const space = () => {
    while (/\s/.test(text[at] ?? '')) at++;
  };
  const value = (): unknown => {
    space();
    const c = text[at];
    if (c === '{') {
      at++;
      const out: Record<string, unknown> = {};
      const seen = new Set<string>();
      space();
      if (text[at] === '}') return (at++, out);
      for (;;) {
        space();
        const key = value();
        if (typeof key !== 'string') fail('object key is not a string');
        if (seen.has(key as string)) fail(`duplicate key "${key as string}"`);
        seen.add(key as string);
        space();
        if (text[at++] !== ':') fail('expected ":"');
        out[key as string] = value();
        space();
        const next = text[at++];
        if (next === '}') return out;
        if (next !== ',') fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      at++;
      const out: unknown[] = [];
      space();
      if (text[at] === ']') return (at++, out);
      for (;;) {
        out.push(value());
        space();
        const next = text[at++];
        if (next === ']') return out;
        if (next !== ',') fail('expected "," or "]"');
      }
    }
    // Scalars: the longest JSON token here, read by JSON.parse.
    const m = /^(?:"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(at));
    if (!m) return fail('unexpected character');
    at += m[0].length;
    return JSON.parse(m[0]) as unknown;
  };
  const out = value();
  space();
  if (at !== text.length) fail('trailing characters');
  return out;
}

function capture(): { sink: Writable; lines: () => Record<string, unknown>[] } {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw.push(chunk.toString());
      done();
    },
  });
  return {
    sink,
    lines: () =>
      raw
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => parseStrict(l) as Record<string, unknown>),
  };
}

describe('log lines', () => {
  it('the strict parser refuses a repeated key', () => {
    expect(() => parseStrict('{"a":1,"b":{"c":2},"a":3}')).toThrow(/duplicate key "a"/);
    expect(parseStrict('{"a":[1,{"b":"x\\"y"}],"c":null}')).toEqual({ a: [1, { b: 'x"y' }], c: null });
  });

  it('carry each key once: a child replaces its parent’s binding, a logged field replaces a binding', () => {
    const { sink, lines } = capture();
    // The runner's chain: the process logger, its runner id (bound twice, as main.ts and runner.ts do),
    // the browser pool's component, a session's lazy child, and fields that repeat the bindings.
    const proc = createLogger('debug', { component: 'runner' }, sink);
    const runner = proc.child({ runnerId: 'r-1' }).child({ runnerId: 'r-1' });
    const browser = runner.child({ component: 'browser' });
    browser.info({ generation: 1 }, 'browser launched');
    const session = lazyChild(runner, { sessionId: 's-1', attempt: 1 });
    session.warn({ sessionId: 's-1', name: 'x.png' }, 'artifact upload failed');
    session.info({ attempt: 2 }, 'retried');
    runner.info('runner started');

    const out = lines();
    expect(out).toHaveLength(4);
    expect(out[0]).toMatchObject({ component: 'browser', runnerId: 'r-1', generation: 1 });
    expect(out[1]).toMatchObject({ component: 'runner', sessionId: 's-1', name: 'x.png' });
    expect(out[2]).toMatchObject({ sessionId: 's-1', attempt: 2 });
    expect(out[3]).toMatchObject({ component: 'runner', runnerId: 'r-1', msg: 'runner started' });
    for (const l of out) expect(typeof l.pid).toBe('number');
    // A parent is not changed by its children.
    runner.info('again');
    expect(lines()[4]).toMatchObject({ component: 'runner', msg: 'again' });
  });

  it('carry each key once in the API’s request logs (Fastify’s request children)', async () => {
    const { sink, lines } = capture();
    const log = createLogger('trace', { component: 'api' }, sink);
    const app = Fastify({ loggerInstance: log });
    app.get('/x', (req) => {
      req.log.child({ component: 'route', reqId: 'own' }).info({ component: 'handler' }, 'in the route');
      return { ok: true };
    });
    await app.inject({ method: 'GET', url: '/x' });
    await app.close();
    const out = lines();
    expect(out.length).toBeGreaterThanOrEqual(3);
    expect(out.find((l) => l.msg === 'in the route')).toMatchObject({ component: 'handler', reqId: 'own' });
    expect(out.filter((l) => typeof l.reqId === 'string').length).toBeGreaterThanOrEqual(3);
  });

  it('still redact secrets given as bindings', () => {
    const { sink, lines } = capture();
    createLogger('info', {}, sink)
      .child({ token: 'tok-123', input: { secret: 's-456' } })
      .info('bound');
    const text = JSON.stringify(lines());
    expect(text).not.toContain('tok-123');
    expect(text).not.toContain('s-456');
  });
});
