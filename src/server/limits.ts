import type { FastifyInstance } from 'fastify';
import { ValidationError } from '../core/errors.js';

/** Deepest JSON body accepted. Far above any real flow or result, far below Postgres's parser stack limit. */
export const MAX_JSON_DEPTH = 64;

/** Nesting depth of a parsed JSON value, walked without recursion; stops counting past `limit`. */
export function jsonDepth(value: unknown, limit = Number.POSITIVE_INFINITY): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

/** Refuses JSON bodies nested deeper than MAX_JSON_DEPTH as bad input (400) before they reach a handler. */
export function registerBodyLimits(app: FastifyInstance): void {
  app.addHook('preValidation', async (req) => {
    const body = req.body;
    if (body === null || typeof body !== 'object' || Buffer.isBuffer(body)) return;
    if (jsonDepth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH)
      throw new ValidationError('body', `is nested more than ${MAX_JSON_DEPTH} levels deep`);
  });
}
