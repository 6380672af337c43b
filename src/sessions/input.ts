import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { ValidationError } from '../core/errors.js';
import type { JsonSchema, ZodLikeSchema } from './define.js';

/** Checks a session's input; returns the parsed value or throws a ValidationError naming the field. */
export type InputValidator = (input: unknown) => unknown;

function isZodLike(schema: unknown): schema is ZodLikeSchema {
  return typeof (schema as { safeParse?: unknown }).safeParse === 'function';
}

function joinPath(parts: ReadonlyArray<PropertyKey>): string {
  return ['input', ...parts.map((p) => String(p))].join('.');
}

let ajv: Ajv | undefined;
let ajv2020: Ajv2020 | undefined;

function compileJsonSchema(schema: JsonSchema): ValidateFunction {
  const options = { allErrors: false, strict: false, useDefaults: true, coerceTypes: false } as const;
  if (typeof schema.$schema === 'string' && schema.$schema.includes('2020-12')) {
    if (!ajv2020) {
      ajv2020 = new Ajv2020(options);
      addFormats.default(ajv2020);
    }
    return ajv2020.compile(schema);
  }
  if (!ajv) {
    ajv = new Ajv(options);
    addFormats.default(ajv);
  }
  return ajv.compile(schema);
}

/** Builds the validator of a session type's `input` schema (zod-like or JSON schema); none accepts all. */
export function inputValidator(schema: ZodLikeSchema | JsonSchema | undefined): InputValidator {
  if (schema === undefined) return (input) => input;
  if (isZodLike(schema)) {
    return (input) => {
      const parsed = schema.safeParse(input);
      if (parsed.success) return parsed.data;
      const issue = parsed.error.issues[0];
      throw new ValidationError(joinPath(issue?.path ?? []), issue?.message ?? 'is invalid');
    };
  }
  const validate = compileJsonSchema(schema);
  return (input) => {
    // ajv's useDefaults writes into the object: validate a copy.
    const copy: unknown = input === undefined ? undefined : structuredClone(input);
    if (validate(copy)) return copy;
    const err = validate.errors?.[0];
    if (!err) throw new ValidationError('input', 'is invalid');
    const parts = err.instancePath.split('/').filter(Boolean);
    const missing =
      err.keyword === 'required' ? (err.params as { missingProperty?: string }).missingProperty : undefined;
    if (missing !== undefined) parts.push(missing);
    throw new ValidationError(
      joinPath(parts),
      missing !== undefined ? 'is required' : (err.message ?? 'is invalid'),
    );
  };
}
