import { z } from 'zod';
import type { JsonSchema, ZodLikeSchema } from './define.js';

/**
 * A session type's input schema as JSON Schema, for the API to check input at enqueue. zod 4 schemas are
 * converted with z.toJSONSchema (their input side: defaults optional, unknown keys allowed unless strict);
 * JSON schemas are sent as they are. What cannot be converted (zod 3, z.custom, dates…) has `schema: null`
 * and a note saying why: the runner alone checks it.
 */
export interface InputJsonSchema {
  schema: Record<string, unknown> | null;
  note?: string;
}

const RUNNER_ONLY = 'its input is checked on the runner only';

interface Zod4Node {
  _zod: { def: { checks?: ReadonlyArray<{ _zod?: { def?: { check?: string } } }> } };
}

function isZod4(schema: object): schema is z.ZodType {
  return typeof (schema as { _zod?: { def?: unknown } })._zod?.def === 'object';
}

export function inputJsonSchema(schema: ZodLikeSchema | JsonSchema | undefined): InputJsonSchema {
  if (schema === undefined) return { schema: null, note: 'no input schema: any input is accepted' };
  if (typeof (schema as { safeParse?: unknown }).safeParse !== 'function')
    return { schema: schema as JsonSchema };
  if (!isZod4(schema)) {
    const zod3 = typeof (schema as { _def?: unknown })._def === 'object';
    return {
      schema: null,
      note: `${zod3 ? 'a zod 3 schema' : 'not a zod 4 schema'} cannot be converted to JSON Schema (zod 4 can): ${RUNNER_ONLY}`,
    };
  }
  let refined = false;
  try {
    const json = z.toJSONSchema(schema, {
      io: 'input',
      // .refine() and .superRefine() have no JSON Schema: the API checks the rest.
      override: ({ zodSchema }) => {
        const checks = (zodSchema as unknown as Zod4Node)._zod.def.checks ?? [];
        if (checks.some((c) => c._zod?.def?.check === 'custom')) refined = true;
      },
    }) as Record<string, unknown>;
    return refined ? { schema: json, note: `refinements are checked on the runner only` } : { schema: json };
  } catch (err) {
    return {
      schema: null,
      note: `cannot be converted to JSON Schema (${(err as Error).message.split('\n')[0]?.slice(0, 200)}): ${RUNNER_ONLY}`,
    };
  }
}
