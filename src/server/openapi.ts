import type { FastifyInstance, RouteOptions } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import {
  CONTROL_SCHEMAS,
  FLOW_STEP_SCHEMAS,
  FlowConditionSchema,
  FlowInput,
  type FlowAction,
} from '../protocol/flow.js';

/** Collects every route's schemas into an OpenAPI 3.1 document (the schemas are the contract). */

interface Doc {
  openapi: string;
  info: { title: string; version: string };
  components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> };
  paths: Record<string, Record<string, unknown>>;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** The component name of an action's step, as the SDK's types name it: goto → GotoStep, waitFor → WaitForStep. */
export function stepComponentName(action: FlowAction): string {
  return `${action[0]?.toUpperCase() ?? ''}${action.slice(1)}Step`;
}

/**
 * A route or flow schema as plain JSON Schema (TypeBox's symbols dropped), with what the schemas mark
 * as flow parts pointing at the flow components: nested steps (`x-flow: steps`) and conditions
 * (`x-flow: condition`) of control steps, and a session's input (`x-session-input`), which is
 * FlowInput when the body's type is flow. The server validates the unmarked schemas, unchanged.
 */
export function openApiSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(openApiSchema);
  if (typeof schema !== 'object' || schema === null) return schema;
  const s = schema as Record<string, unknown>;
  const { 'x-flow': mark, 'x-session-input': input, ...rest } = s;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest))
    out[k] = k === 'examples' || k === 'default' || k === 'const' ? v : openApiSchema(v);
  if (mark === 'steps') out.items = ref('FlowStep');
  if (mark === 'condition') {
    delete out.anyOf;
    Object.assign(out, ref('FlowCondition'));
  }
  if (input === true) out.anyOf = [ref('FlowInput'), {}];
  // A body with a session input: a flow's is FlowInput, to tools that read the document.
  const props = rest.properties as Record<string, Record<string, unknown>> | undefined;
  if (rest.type === 'object' && props?.input?.['x-session-input'] === true && props.type !== undefined) {
    out.if = { properties: { type: { const: 'flow' } }, required: ['type'] };
    out.then = { properties: { input: ref('FlowInput') } };
  }
  return out;
}

/** FlowInput and what it is made of: every action's step (a oneOf on action), the condition. */
export function flowComponents(): Record<string, unknown> {
  const steps: Record<string, TSchema> = { ...FLOW_STEP_SCHEMAS, ...CONTROL_SCHEMAS };
  const actions = Object.keys(steps) as FlowAction[];
  const components: Record<string, unknown> = {
    FlowInput: openApiSchema(FlowInput),
    FlowStep: {
      description: 'One step of a flow, by its action.',
      oneOf: actions.map((a) => ref(stepComponentName(a))),
      discriminator: {
        propertyName: 'action',
        mapping: Object.fromEntries(actions.map((a) => [a, ref(stepComponentName(a)).$ref])),
      },
    },
    FlowCondition: openApiSchema(FlowConditionSchema),
  };
  for (const a of actions) components[stepComponentName(a)] = openApiSchema(steps[a]);
  return components;
}

export function openApiDocument(routes: readonly RouteOptions[], version: string): Doc {
  const doc: Doc = {
    openapi: '3.1.0',
    info: { title: 'Session Framework API', version },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: flowComponents(),
    },
    paths: {},
  };
  for (const r of routes) {
    const methods = (Array.isArray(r.method) ? r.method : [r.method]).map((m) => String(m).toLowerCase());
    if (methods.includes('head')) continue;
    const oaPath = r.url.replace(/:(\w+)/g, '{$1}');
    const schema = (r.schema ?? {}) as Record<string, unknown> & { hide?: boolean };
    if (schema.hide) continue;
    const params = schema.params as { properties?: Record<string, unknown> } | undefined;
    const query = schema.querystring as { properties?: Record<string, unknown> } | undefined;
    const parameters = [
      ...Object.entries(params?.properties ?? {}).map(([name, s]) => ({
        name,
        in: 'path',
        required: true,
        schema: openApiSchema(s),
      })),
      ...Object.entries(query?.properties ?? {}).map(([name, s]) => ({
        name,
        in: 'query',
        schema: openApiSchema(s),
      })),
    ];
    const responses: Record<string, unknown> = {};
    for (const [code, s] of Object.entries(
      (schema.response as Record<string, unknown> | undefined) ?? { 200: {} },
    )) {
      responses[code] = { description: code, content: { 'application/json': { schema: openApiSchema(s) } } };
    }
    const op: Record<string, unknown> = {
      operationId: `${methods[0]} ${r.url}`,
      tags: [r.url.split('/')[2] ?? 'ops'],
      parameters,
      responses,
      'x-scope': (r.config as { scope?: string } | undefined)?.scope ?? 'public',
    };
    if (schema.body)
      op.requestBody = {
        required: true,
        content: { 'application/json': { schema: openApiSchema(schema.body) } },
      };
    for (const m of methods) (doc.paths[oaPath] ??= {})[m] = op;
  }
  return doc;
}

/** Call before routes are registered: the returned list fills with the app's routes. */
export function trackRoutes(app: FastifyInstance): RouteOptions[] {
  const list: RouteOptions[] = [];
  app.addHook('onRoute', (r) => {
    list.push(r);
  });
  return list;
}
