import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { inputJsonSchema } from '../../src/sessions/json-schema.js';

/** What a runner registers as a type's input schema, for the API to check input at enqueue. */
describe('inputJsonSchema', () => {
  it('converts a zod 4 schema by its input side: defaults optional, unknown keys allowed', () => {
    const out = inputJsonSchema(z.object({ url: z.url(), n: z.number().int().default(3) }));
    expect(out.note).toBeUndefined();
    expect(out.schema).toMatchObject({
      type: 'object',
      properties: { url: { type: 'string', format: 'uri' }, n: { type: 'integer', default: 3 } },
      required: ['url'],
    });
    expect(out.schema).not.toHaveProperty('additionalProperties');
    expect(inputJsonSchema(z.strictObject({ a: z.string() })).schema).toMatchObject({
      additionalProperties: false,
    });
  });

  it('keeps a transformed field as what it takes', () => {
    const out = inputJsonSchema(z.object({ a: z.string().transform((s) => s.length) }));
    expect(out.schema).toMatchObject({ properties: { a: { type: 'string' } } });
  });

  it('says that refinements are left to the runner', () => {
    const out = inputJsonSchema(z.object({ a: z.string().refine((s) => s.length > 2) }));
    expect(out.schema).toMatchObject({ properties: { a: { type: 'string' } } });
    expect(out.note).toBe('refinements are checked on the runner only');
  });

  it('registers what JSON Schema cannot hold without a schema, saying why', () => {
    for (const schema of [z.object({ t: z.custom(() => true) }), z.object({ d: z.date() })]) {
      const out = inputJsonSchema(schema);
      expect(out.schema).toBeNull();
      expect(out.note).toMatch(
        /^cannot be converted to JSON Schema \(.+\): its input is checked on the runner only$/,
      );
    }
    const zod3Like = { _def: { typeName: 'ZodObject' }, safeParse: () => ({ success: true, data: {} }) };
    expect(inputJsonSchema(zod3Like)).toEqual({
      schema: null,
      note: 'a zod 3 schema cannot be converted to JSON Schema (zod 4 can): its input is checked on the runner only',
    });
  });

  it('sends a JSON schema as it is, and no schema as null', () => {
    const json = { type: 'object', properties: { ms: { type: 'integer' } } };
    expect(inputJsonSchema(json)).toEqual({ schema: json });
    expect(inputJsonSchema(undefined)).toEqual({
      schema: null,
      note: 'no input schema: any input is accepted',
    });
  });
});
