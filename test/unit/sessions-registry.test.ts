import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { ValidationError } from '../../src/core/errors.js';
import { defineSession } from '../../src/sessions/define.js';
import { inputValidator } from '../../src/sessions/input.js';
import { loadSessionTypes } from '../../src/sessions/registry.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sfw-sessions-'));
  const defineUrl = pathToFileURL(join(import.meta.dirname, '../../src/sessions/define.ts')).href;
  const files: Record<string, string> = {
    'a-good.mjs': `export default { name: 'good', timeoutMs: 5000, run: () => 'ok' };`,
    'b-defined.mjs': `import { defineSession } from '${defineUrl}';
      export default defineSession({ name: 'defined', reuseContext: true, maxAttempts: 2,
        input: { type: 'object', required: ['q'] }, run: ({ input }) => input.q });`,
    'c-broken.mjs': `export default {{ name: 'broken' `,
    'd-no-default.mjs': `export const session = { name: 'nodefault', run() {} };`,
    'e-bad-shape.mjs': `export default { name: 'bad name!', run: () => 1 };`,
    'f-dup.mjs': `export default { name: 'good', run: () => 2 };`,
    'g-flow.mjs': `export default { name: 'flow', run: () => 3 };`,
    'h-throws.mjs': `throw new Error('cannot reach the config service');`,
    'i-api.cjs': `module.exports = { name: 'api-check', browser: false, run: () => ({ up: true }) };`,
    'notes.txt': 'not a module',
    '_helper.mjs': `throw new Error('helpers are not session modules');`,
  };
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('loadSessionTypes', () => {
  it('loads the built-in flow and every valid module; each bad module is a problem naming its file', async () => {
    const { types, problems } = await loadSessionTypes(dir);
    expect([...types.keys()].sort()).toEqual(['api-check', 'defined', 'flow', 'good']);

    const byFile: Record<string, string> = Object.fromEntries(
      problems.map((p) => [p.file.split('/').pop() ?? p.file, p.message]),
    );
    expect(Object.keys(byFile).sort()).toEqual([
      'c-broken.mjs',
      'd-no-default.mjs',
      'e-bad-shape.mjs',
      'f-dup.mjs',
      'g-flow.mjs',
      'h-throws.mjs',
    ]);
    expect(byFile['c-broken.mjs']).toMatch(/^cannot load: /);
    expect(byFile['d-no-default.mjs']).toBe(
      'no default export: the module must `export default defineSession({ name, run })`',
    );
    expect(byFile['e-bad-shape.mjs']).toMatch(
      /^default export is not a valid defineSession\(\): name: must be/,
    );
    expect(byFile['f-dup.mjs']).toBe(
      `session type "good" is already defined by ${join(dir, 'a-good.mjs')}; names must be unique`,
    );
    expect(byFile['g-flow.mjs']).toBe(
      'session type "flow" is already defined by built-in; names must be unique',
    );
    expect(byFile['h-throws.mjs']).toBe('cannot load: cannot reach the config service');
    for (const p of problems) expect(p.file.startsWith(dir)).toBe(true);
  });

  it('normalizes definitions: browser, reuseContext, timeouts, input validation, run', async () => {
    const { types } = await loadSessionTypes(dir);
    const good = types.get('good')!;
    expect(good).toMatchObject({ kind: 'code', browser: true, reuseContext: false, timeoutMs: 5000 });
    expect(good.maxAttempts).toBeUndefined();
    const defined = types.get('defined')!;
    expect(defined).toMatchObject({ browser: true, reuseContext: true, maxAttempts: 2 });
    expect(() => defined.validateInput({})).toThrow('input.q: is required');
    expect(defined.validateInput({ q: 'x' })).toEqual({ q: 'x' });
    const api = types.get('api-check')!;
    expect(api.browser).toBe(false);
    const ctx = {
      input: {},
      signal: new AbortController().signal,
      log: () => {},
      attempt: 1,
      sessionId: 's',
      artifacts: { add: async () => {} },
    };
    await expect(api.run(ctx)).resolves.toEqual({ up: true });
    const flow = types.get('flow')!;
    expect(flow).toMatchObject({ kind: 'flow', browser: true, source: 'built-in' });
    expect(() => flow.validateInput({ steps: [{ action: 'goto' }] })).toThrow(
      'input.steps.0.url: is required',
    );
  });

  it('without a folder serves only flow; a missing folder is a problem', async () => {
    expect([...(await loadSessionTypes()).types.keys()]).toEqual(['flow']);
    const missing = await loadSessionTypes(join(dir, 'nope'));
    expect([...missing.types.keys()]).toEqual(['flow']);
    expect(missing.problems[0]?.message).toMatch(/^cannot read the sessions folder/);
  });
});

describe('defineSession', () => {
  it('returns the definition, checks its shape and names the bad field', () => {
    const def = defineSession({ name: 'ok', run: () => 1 });
    expect(def.name).toBe('ok');
    const bad = (d: unknown) => () => defineSession(d as Parameters<typeof defineSession>[0]);
    expect(bad({ name: 'x' })).toThrow('run: must be a function');
    expect(bad({ name: '', run: () => 1 })).toThrow(/^name: must be/);
    expect(bad({ name: 'x', run: () => 1, timeoutMs: 0 })).toThrow(
      'timeoutMs: must be an integer from 100 to 86400000',
    );
    // What enqueue would take: the type registers its defaults with the API.
    expect(bad({ name: 'x', run: () => 1, timeoutMs: 99 })).toThrow(/^timeoutMs: /);
    expect(bad({ name: 'x', run: () => 1, maxAttempts: 101 })).toThrow(
      'maxAttempts: must be an integer from 1 to 100',
    );
    expect(bad({ name: 'x', run: () => 1, browser: false, reuseContext: true })).toThrow(
      'reuseContext: needs a browser',
    );
    expect(bad({ name: 'x', run: () => 1, input: 'string' })).toThrow(
      'input: must be a zod schema or a JSON schema object',
    );
    expect(bad({ name: 'x', run: () => 1, timeoutMs: 100, maxAttempts: 100 })).not.toThrow();
  });

  it('types the run context: a page for browser sessions, none for browser: false', () => {
    defineSession({
      name: 'typed-browser',
      run: (ctx) => {
        expectTypeOf(ctx.page).toEqualTypeOf<Page>();
        expectTypeOf(ctx.context).toEqualTypeOf<BrowserContext>();
      },
    });
    defineSession({
      name: 'typed-api',
      browser: false,
      run: (ctx) => {
        expectTypeOf(ctx.page).toEqualTypeOf<undefined>();
        expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
      },
    });
  });
});

describe('input schemas', () => {
  it('zod: returns parsed data (defaults applied), errors name the field path', () => {
    const check = inputValidator(
      z.object({ items: z.array(z.object({ sku: z.string() })), n: z.number().default(2) }),
    );
    expect(check({ items: [{ sku: 'a' }] })).toEqual({ items: [{ sku: 'a' }], n: 2 });
    let err: unknown;
    try {
      check({ items: [{ sku: 'a' }, { sku: 5 }] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).path).toBe('input.items.1.sku');
  });

  it('JSON schema (draft-07 and 2020-12): nested paths, required fields, formats; the input is not mutated', () => {
    const check = inputValidator({
      type: 'object',
      properties: {
        site: { type: 'string', format: 'uri' },
        pages: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' } } } },
        depth: { type: 'integer', default: 1 },
      },
      required: ['site'],
    });
    const input = { site: 'https://example.com' };
    expect(check(input)).toEqual({ site: 'https://example.com', depth: 1 });
    expect(input).toEqual({ site: 'https://example.com' });
    expect(() => check({})).toThrow('input.site: is required');
    expect(() => check({ site: 'not a uri' })).toThrow('input.site: must match format "uri"');
    expect(() => check({ site: 'https://x.y', pages: [{ path: 1 }] })).toThrow(
      'input.pages.0.path: must be string',
    );
    const draft2020 = inputValidator({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'array',
      prefixItems: [{ type: 'string' }],
    });
    expect(() => draft2020([1])).toThrow('input.0: must be string');
  });

  it('no schema accepts anything as is', () => {
    expect(inputValidator(undefined)({ any: 1 })).toEqual({ any: 1 });
  });
});
