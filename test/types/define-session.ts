/**
 * Type-level checks of defineSession, compiled by `npm run typecheck` (tsconfig.check.json) and never run:
 * a zod schema types `input` without a generic; each @ts-expect-error fails the check if its error goes.
 */
import type { Page } from 'playwright-core';
import { defineSession, z } from '../../src/index.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** `is<Expected>()(value, true)` compiles only when the value's type is exactly Expected. */
function is<Expected>() {
  return <Actual>(value: Actual, ok: Equal<Actual, Expected>): Actual => (ok ? value : value);
}

export const zodBrowser = defineSession({
  name: 'typed-zod',
  input: z.object({ url: z.string(), retries: z.number().default(1), tags: z.array(z.string()).optional() }),
  async run({ input, page }) {
    is<{ url: string; retries: number; tags?: string[] | undefined }>()(input, true);
    is<Page>()(page, true);
    // @ts-expect-error a field the schema does not have
    const missing: unknown = input.wrong;
    // @ts-expect-error url is a string, not a number
    const n: number = input.url;
    await page.goto(input.url);
    return { missing, n, retries: input.retries + 1 };
  },
});

export const zodNoBrowser = defineSession({
  name: 'typed-zod-api',
  browser: false,
  input: z.object({ endpoint: z.url() }),
  run({ input, page }) {
    is<{ endpoint: string }>()(input, true);
    is<undefined>()(page, true);
    // @ts-expect-error not in the schema
    const method: unknown = input.method;
    return method;
  },
});

// A JSON schema types nothing: input stays unknown.
export const jsonSchema = defineSession({
  name: 'typed-json',
  input: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
  run({ input }) {
    is<unknown>()(input, true);
    // @ts-expect-error unknown until narrowed
    const q: unknown = input.q;
    return q;
  },
});

// No schema: unknown; an explicit generic still types it as before.
export const none = defineSession({
  name: 'typed-none',
  run({ input }) {
    return is<unknown>()(input, true);
  },
});
export const explicit = defineSession<{ q: string }>({
  name: 'typed-explicit',
  run({ input }) {
    return is<{ q: string }>()(input, true);
  },
});

// The definition keeps the schema's type for callers.
is<string>()(null as unknown as Parameters<(typeof zodBrowser)['run']>[0]['input']['url'], true);
