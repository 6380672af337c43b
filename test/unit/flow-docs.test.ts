import { readFileSync } from 'node:fs';
import type { RouteOptions } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import {
  CONTROL_SCHEMAS,
  FLOW_ACTIONS,
  FLOW_STEP_SCHEMAS,
  FlowConditionSchema,
  FlowInput,
  checkFlowInput,
} from '../../src/protocol/flow.js';
import { BatchBody, CreateSessionBody, SessionView } from '../../src/protocol/schemas.js';
import { openApiDocument, stepComponentName } from '../../src/server/openapi.js';
import { FLOW_DOCS_PATH, FLOW_EXAMPLE_FILES, renderFlowDocs } from '../../scripts/gen-flow-docs.js';

/**
 * The flow reference is made from the step schemas: docs/flows.md is what the generator renders (so it
 * cannot go stale), its examples are flows the server accepts, every step and field is described, and
 * /openapi.json describes a flow's input recursively as FlowInput.
 */

type Schema = TSchema & Record<string, unknown>;
const STEPS: Record<string, Schema> = { ...FLOW_STEP_SCHEMAS, ...CONTROL_SCHEMAS };

/** The ```json blocks of a Markdown text, parsed. */
function jsonBlocks(markdown: string): unknown[] {
  return [...markdown.matchAll(/^```json\n([\s\S]*?)^```$/gm)].map((m) => JSON.parse(m[1] ?? '') as unknown);
}

describe('docs/flows.md', () => {
  it('is what npm run docs:flows generates from the schemas', () => {
    // On a difference: run `npm run docs:flows` and commit docs/flows.md.
    expect(readFileSync(FLOW_DOCS_PATH, 'utf8')).toBe(renderFlowDocs());
  });

  it('has a section per action, each with an example flow the server accepts', () => {
    const doc = renderFlowDocs();
    for (const action of FLOW_ACTIONS) {
      const section = doc.split(`\n### ${action}\n`)[1]?.split('\n### ')[0]?.split('\n## ')[0];
      expect(section, action).toBeDefined();
      const blocks = jsonBlocks(`\n${section ?? ''}`);
      expect(blocks.length, action).toBeGreaterThan(0);
      expect(JSON.stringify(blocks), action).toContain(`"action":"${action}"`);
    }
    const blocks = jsonBlocks(doc);
    expect(blocks.length).toBeGreaterThanOrEqual(FLOW_ACTIONS.length + FLOW_EXAMPLE_FILES.length);
    for (const block of blocks) expect(checkFlowInput(block), JSON.stringify(block)).toBeNull();
  });

  it('shows the examples/ flows as they are, and the server accepts them', () => {
    const doc = renderFlowDocs();
    const blocks = jsonBlocks(doc).map((b) => JSON.stringify(b));
    for (const file of FLOW_EXAMPLE_FILES) {
      const flow = JSON.parse(readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8')) as unknown;
      expect(checkFlowInput(flow), file).toBeNull();
      expect(blocks, file).toContain(JSON.stringify(flow));
    }
  });
});

describe('the step schemas', () => {
  /** Every schema to document: each step, its fields, the condition and its forms, FlowInput's fields. */
  function documented(): [string, Schema][] {
    const out: [string, Schema][] = [['FlowInput', FlowInput]];
    const fields = (at: string, s: Schema) => {
      for (const [name, f] of Object.entries((s.properties ?? {}) as Record<string, Schema>))
        out.push([`${at}.${name}`, f]);
    };
    fields('FlowInput', FlowInput);
    for (const [action, s] of Object.entries(STEPS)) {
      out.push([action, s]);
      fields(action, s);
    }
    out.push(['condition', FlowConditionSchema]);
    for (const [i, m] of ((FlowConditionSchema as Schema).anyOf as Schema[]).entries()) {
      out.push([`condition.${i}`, m]);
      fields(`condition.${i}`, m);
    }
    return out;
  }

  it('describe every step, field and condition, with an example each that the schema accepts', () => {
    const all = documented();
    expect(all.length).toBeGreaterThan(60);
    for (const [at, s] of all) {
      expect(typeof s.description === 'string' && s.description.length > 5, `${at}: description`).toBe(true);
      const examples = s.examples as unknown[] | undefined;
      expect(Array.isArray(examples) && examples.length > 0, `${at}: examples`).toBe(true);
      for (const example of examples ?? [])
        expect(Value.Check(s, example), `${at}: ${JSON.stringify(example)}`).toBe(true);
    }
  });

  it('give the default step timeout and other defaults as schema defaults', () => {
    for (const [action, s] of Object.entries(FLOW_STEP_SCHEMAS))
      expect((s.properties.timeoutMs as Schema).default, action).toBe(15_000);
    expect((FLOW_STEP_SCHEMAS.waitFor.properties.state as Schema).default).toBe('visible');
    expect((FLOW_STEP_SCHEMAS.extract.properties.all as Schema).default).toBe(false);
  });
});

describe('/openapi.json', () => {
  const routes = [
    {
      method: 'POST',
      url: '/v1/sessions',
      schema: { body: CreateSessionBody, response: { 201: SessionView } },
    },
    { method: 'POST', url: '/v1/sessions/batch', schema: { body: BatchBody } },
  ] as unknown as RouteOptions[];
  const doc = JSON.parse(JSON.stringify(openApiDocument(routes, 'test'))) as {
    components: { schemas: Record<string, Record<string, unknown>> };
    paths: Record<string, { post: { requestBody: { content: { 'application/json': { schema: Schema } } } } }>;
  };
  const ajv = new Ajv2020({ strict: false, validateFormats: false });
  ajv.addSchema({ $id: 'sfw', components: doc.components, paths: doc.paths });
  const flowInput = ajv.compile({ $ref: 'sfw#/components/schemas/FlowInput' });
  const body = ajv.compile({
    $ref: 'sfw#/paths/~1v1~1sessions/post/requestBody/content/application~1json/schema',
  });

  it('has a component per action, a oneOf on action, and every $ref resolves', () => {
    const schemas = doc.components.schemas;
    const oneOf = (schemas.FlowStep?.oneOf ?? []) as { $ref: string }[];
    expect(oneOf.map((r) => r.$ref)).toEqual(
      FLOW_ACTIONS.map((a) => `#/components/schemas/${stepComponentName(a)}`),
    );
    for (const a of FLOW_ACTIONS) expect(schemas[stepComponentName(a)]?.description, a).toBeTruthy();
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map(
      (m) => m[1],
    );
    expect(refs.length).toBeGreaterThan(FLOW_ACTIONS.length);
    for (const r of refs) expect(schemas, r).toHaveProperty(r!);
  });

  it('validates flows as the server does, nested steps and conditions included', () => {
    for (const block of jsonBlocks(renderFlowDocs()))
      expect(flowInput(block), JSON.stringify(flowInput.errors)).toBe(true);
    const nested = (step: unknown) => ({
      steps: [{ action: 'repeat', max: 2, steps: [{ action: 'if', when: { url: '**' }, then: [step] }] }],
    });
    expect(flowInput(nested({ action: 'click', selector: '#a' }))).toBe(true);
    for (const bad of [
      nested({ action: 'click', selektor: '#a' }),
      nested({ action: 'fly' }),
      { steps: [{ action: 'repeat', max: 2, steps: [], until: { state: 'visible' } }] },
      { steps: [{ action: 'goto', url: 'https://example.com', timeoutMs: 0 }] },
      { steps: [] },
    ]) {
      expect(flowInput(bad), JSON.stringify(bad)).toBe(false);
      expect(checkFlowInput(bad), JSON.stringify(bad)).not.toBeNull();
    }
  });

  it("describes a create-session body's input as FlowInput when its type is flow", () => {
    const schema = doc.paths['/v1/sessions']!.post.requestBody.content['application/json'].schema;
    const input = (schema.properties as Record<string, Schema>).input!;
    expect(input.anyOf).toEqual([{ $ref: '#/components/schemas/FlowInput' }, {}]);
    expect(input.description).toMatch(/FlowInput when type is flow/);
    expect(schema.then).toEqual({ properties: { input: { $ref: '#/components/schemas/FlowInput' } } });
    const batch = doc.paths['/v1/sessions/batch']!.post.requestBody.content['application/json'].schema;
    expect(JSON.stringify(batch)).toContain(
      '"then":{"properties":{"input":{"$ref":"#/components/schemas/FlowInput"}}}',
    );
    const flow = { steps: [{ action: 'goto', url: 'https://example.com' }] };
    expect(body({ type: 'flow', input: flow }), JSON.stringify(body.errors)).toBe(true);
    expect(body({ type: 'flow', input: { steps: [{ action: 'fly' }] } })).toBe(false);
    expect(body({ type: 'price-check', input: { steps: [{ action: 'fly' }] } })).toBe(true);
  });
});
