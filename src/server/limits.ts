import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SfwError, ValidationError } from '../core/errors.js';

/** Deepest JSON body accepted. Far above any real flow or result, far below Postgres's parser stack limit. */
export const MAX_JSON_DEPTH = 64;
/**
 * Most keys one JSON object may have. Parsing an object with a million distinct keys takes the event loop
 * half a second (V8 turns it into a dictionary); lists belong in arrays.
 */
export const MAX_JSON_KEYS = 10_000;
/**
 * Most values (object keys and array items) in one body: bounds the time JSON.parse holds the event loop
 * (about 0.4 µs a value at worst), whatever the byte limit. A batch of 10,000 flows of ten steps has 440,000.
 */
export const MAX_JSON_VALUES = 500_000;

export interface JsonLimits {
  depth: number;
  keys: number;
  values: number;
}

export const JSON_LIMITS: JsonLimits = {
  depth: MAX_JSON_DEPTH,
  keys: MAX_JSON_KEYS,
  values: MAX_JSON_VALUES,
};

/**
 * Checks JSON text against the limits before it is parsed, in one pass that skips string contents with
 * indexOf: a few milliseconds a megabyte, against seconds for parsing and walking a hostile body. Malformed
 * text is left to the parser to report.
 */
export function jsonLimitProblem(text: string, limits: JsonLimits = JSON_LIMITS): SfwError | undefined {
  const keys = new Int32Array(limits.depth + 2);
  const inObject = new Uint8Array(limits.depth + 2);
  let depth = 0;
  let values = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      let end = text.indexOf('"', i + 1);
      for (;;) {
        if (end === -1) return undefined;
        let slashes = 0;
        while (text.charCodeAt(end - 1 - slashes) === 92 /* \ */) slashes++;
        if (slashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      i = end;
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > limits.depth)
        return new ValidationError('body', `is nested more than ${limits.depth} levels deep`);
      inObject[depth] = c === 123 ? 1 : 0;
      keys[depth] = 0;
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      if (--depth < 0) return undefined;
    } else if (c === 58 /* : */ || c === 44 /* , */) {
      // A value is counted by the colon after its key in an object, by the comma before it in an array.
      const object = inObject[depth] === 1;
      if (object !== (c === 58)) continue;
      if (object && ++keys[depth]! > limits.keys) {
        return new SfwError(
          'PAYLOAD_TOO_LARGE',
          `body: an object has more than ${limits.keys} keys: put long lists in arrays`,
          { path: 'body' },
        );
      }
      if (++values > limits.values) {
        return new SfwError(
          'PAYLOAD_TOO_LARGE',
          `body: holds more than ${limits.values} values (keys and array items): send less in one request, e.g. smaller batches`,
          { path: 'body' },
        );
      }
    }
  }
  return undefined;
}

/**
 * The JSON parser of every route: the limits first, then Fastify's own parser (which refuses __proto__ and
 * constructor.prototype keys). Routes that take raw bodies get the bytes as they came.
 */
export function registerBodyLimits(app: FastifyInstance, rawBody: (req: FastifyRequest) => boolean): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body: Buffer, done) => {
    if (rawBody(req)) return done(null, body);
    const text = body.toString('utf8');
    const problem = jsonLimitProblem(text);
    if (problem) return done(problem, undefined);
    void parse(req, text, done);
  });
}
