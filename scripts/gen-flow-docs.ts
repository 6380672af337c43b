/**
 * Writes docs/flows.md, the flow reference, from the step schemas (src/protocol/flow.ts), the placeholder
 * rules (src/protocol/placeholders.ts, run on real values) and the examples in examples/. `npm run
 * docs:flows` writes it; `--check` exits 1 when the file differs. test/unit/flow-docs.test.ts fails when
 * the committed file is not what this renders.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TSchema } from '@sinclair/typebox';
import { DEFAULT_SESSION_TIMEOUT_MS } from '../src/core/types.js';
import {
  CONDITION_TIMEOUT_MS,
  CONTROL_SCHEMAS,
  DEFAULT_STEP_TIMEOUT_MS,
  FLOW_STEP_SCHEMAS,
  FlowConditionSchema,
  FlowInput,
  MAX_FLOW_DEPTH,
  MAX_FLOW_EXECUTED_STEPS,
  MAX_FLOW_STEPS,
  MAX_REPEAT_PASSES,
  RESERVED_NAMES,
  type FlowAction,
} from '../src/protocol/flow.js';
import { fillSelector, fillText } from '../src/protocol/placeholders.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const FLOW_DOCS_PATH = `${ROOT}docs/flows.md`;
/** The flow examples the reference shows, read from examples/. */
export const FLOW_EXAMPLE_FILES = ['examples/login-check.json', 'examples/paginated-scrape.json'];

type Schema = TSchema & Record<string, unknown>;
const STEPS: Record<string, Schema> = { ...FLOW_STEP_SCHEMAS, ...CONTROL_SCHEMAS };
const ACTIONS = Object.keys(STEPS) as FlowAction[];
const LEAF_ACTIONS = Object.keys(FLOW_STEP_SCHEMAS);

const n = (v: number) => v.toLocaleString('en-US');
const code = (s: string) => (s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``);
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const examplesOf = (s: Schema): unknown[] => (Array.isArray(s.examples) ? (s.examples as unknown[]) : []);

/** JSON on one line when it fits in `width` (after `lead` characters of its line), else one member per line. */
export function formatJson(value: unknown, indent = 0, lead = indent, width = 100): string {
  const flat = flatJson(value);
  if (lead + flat.length <= width || typeof value !== 'object' || value === null) return flat;
  const pad = ' '.repeat(indent + 2);
  const end = ' '.repeat(indent);
  if (Array.isArray(value)) {
    return `[\n${value.map((v) => pad + formatJson(v, indent + 2)).join(',\n')}\n${end}]`;
  }
  const members = Object.entries(value).map(([k, v]) => {
    const key = `${pad}${JSON.stringify(k)}: `;
    return key + formatJson(v, indent + 2, key.length);
  });
  return `{\n${members.join(',\n')}\n${end}}`;
}

function flatJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(flatJson).join(', ')}]`;
  if (typeof value === 'object' && value !== null) {
    const members = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${flatJson(v)}`);
    return members.length ? `{ ${members.join(', ')} }` : '{}';
  }
  return JSON.stringify(value);
}

function typeOf(s: Schema): string {
  if (s['x-flow'] === 'steps') return 'array of steps';
  if (s['x-flow'] === 'condition') return '[condition](#conditions)';
  if (s.const !== undefined) return code(JSON.stringify(s.const));
  if (Array.isArray(s.anyOf)) return (s.anyOf as Schema[]).map(typeOf).join(', ');
  if (s.type === 'array') return `array of ${typeOf(s.items as Schema)}`;
  if (s.type === 'object') return 'object';
  return String(s.type ?? 'any');
}

function limitsOf(s: Schema): string {
  const out: string[] = [];
  const range = (min: unknown, max: unknown, unit: string) => {
    if (typeof min === 'number' && typeof max === 'number') out.push(`${n(min)} to ${n(max)}${unit}`);
    else if (typeof max === 'number') out.push(`at most ${n(max)}${unit}`);
    else if (typeof min === 'number') out.push(`at least ${n(min)}${unit}`);
  };
  if (s.type === 'string') range(s.minLength, s.maxLength, ' characters');
  if (s.type === 'integer' || s.type === 'number') range(s.minimum, s.maximum, '');
  if (s.type === 'array') range(s.minItems, s.maxItems, ' steps');
  if (typeof s.pattern === 'string') out.push(`matches ${code(s.pattern)}`);
  return out.join('; ');
}

function fieldTable(schema: Schema): string {
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  const required = new Set((schema.required as string[] | undefined) ?? []);
  const rows = Object.entries(props).map(([name, s]) => {
    const example = examplesOf(s)[0];
    const description =
      String(s.description ?? '') +
      (example !== undefined && s.const === undefined ? ` E.g. ${code(flatJson(example))}.` : '');
    return [
      code(name),
      typeOf(s),
      required.has(name) ? 'yes' : 'no',
      limitsOf(s),
      s.default === undefined ? '' : code(JSON.stringify(s.default)),
      description,
    ]
      .map(cell)
      .join(' | ');
  });
  return [
    '| Field | Type | Required | Limits | Default | Description |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r} |`),
  ].join('\n');
}

/** A flow holding the step's example, as one would enqueue it (a break goes inside a repeat). */
export function exampleFlow(action: FlowAction, step: unknown): Record<string, unknown> {
  if (action !== 'break') return { steps: [step] };
  return {
    steps: [
      {
        action: 'repeat',
        max: 20,
        steps: [
          { action: 'if', when: { text: 'No more results' }, then: [step] },
          { action: 'click', selector: 'text=Load more' },
        ],
      },
    ],
  };
}

const json = (v: unknown) => ['```json', formatJson(v), '```'].join('\n');

function actionSection(action: FlowAction): string {
  const s = STEPS[action] as Schema;
  const example = examplesOf(s)[0];
  return [
    `### ${action}`,
    '',
    String(s.description),
    '',
    fieldTable(s),
    '',
    json(exampleFlow(action, example)),
  ].join('\n');
}

function conditionSection(): string {
  const members = (FlowConditionSchema as Schema).anyOf as Schema[];
  const parts = members.map((m) =>
    [
      `**${String(m.description).replace(/\.$/, '')}**, e.g. ${code(flatJson(examplesOf(m)[0]))}:`,
      '',
      fieldTable(m),
    ].join('\n'),
  );
  return [
    '## Conditions',
    '',
    `${String((FlowConditionSchema as Schema).description)} \`repeat\` checks its \`until\` after each pass, \`if\` its \`when\` when it starts. A condition is one of:`,
    '',
    ...parts.flatMap((p) => [p, '']),
    `Reading an element's enabled or disabled state is bounded by ${n(CONDITION_TIMEOUT_MS)} ms. A condition's URL glob and text are those of \`waitFor\`, which waits for them.`,
  ].join('\n');
}

/** What the placeholder code makes of some values: shown as they are produced, so they cannot drift. */
function placeholderExamples(): string {
  const input = { input: { q: 'say "hi"', id: 'main', user: { name: 'Ada' }, n: 3 }, q: 'ignored' };
  const rows: [string, string][] = [];
  const show = (template: string, selector: boolean) => {
    const filled = selector ? fillSelector(template, input) : fillText(template, input);
    const out =
      'text' in filled
        ? code(filled.text)
        : 'missing' in filled
          ? filled.missing
          : `refused: ${filled.refused}`;
    rows.push([code(template), out]);
  };
  show('Hello {{input.user.name}}, {{ input.n }} new', false);
  show('{{input.q}}', false);
  show('{{input.nothing}}', false);
  show('{{secrets.token}}', false);
  show('text="{{input.q}}"', true);
  show("[name='{{input.q}}']", true);
  show('#{{input.id}} >> li', true);
  const hostile = { input: { id: 'x >> text=Delete' } };
  const refused = fillSelector('#{{input.id}}', hostile);
  return [
    `With the input ${code(JSON.stringify(input))}:`,
    '',
    '| Template | Becomes |',
    '| --- | --- |',
    ...rows.map(([t, o]) => `| ${cell(t)} | ${cell(o)} |`),
    '',
    `A value that would change a selector's steps, such as ${code(hostile.input.id)} in ${code('#{{input.id}}')}, is refused: ${'refused' in refused ? refused.refused : '(not refused)'}.`,
  ].join('\n');
}

function placeholdersSection(): string {
  return [
    '## Placeholders',
    '',
    "`{{input.<path>}}` in a step's strings is replaced by a value of the session's input: `input.input.<path>` when it is there, else `input.<path>` (a top-level key of the input, beside `steps`). The path may go into objects (`{{input.user.name}}`) and may have spaces inside the braces (`{{ input.x }}`). Strings are inserted as they are, other values as JSON.",
    '',
    "- **Where.** Every string field of a step but `action`, in nested steps and in conditions too: `goto` URLs (`{{input.baseUrl}}/login`: the URL is checked for http(s) and against the runner's target policy after it is filled), selectors, `fill`/`select` values, `press` keys, `assert`/`waitFor` texts, `extract`/`evaluate` names (`as`), `evaluate` expressions (as raw JavaScript text). Not in numbers or booleans, nor in a `screenshot` `name` (its pattern leaves no room for braces).",
    "- **Missing values.** A placeholder whose value is absent (or null) fails its step when it runs, naming it: `placeholder {{input.x}} has no value: set input.x when enqueuing`. At enqueue the server fills selectors and `as` names with the values the input has, and refuses (400, with the field's path) a selector a value would change and an `as` that becomes a reserved name.",
    '- **Selectors.** A value is text, never selector syntax. Inside a quoted string of the selector (`text="{{input.q}}"`, `[name=\'{{input.q}}\']`, `:has-text("{{input.q}}")`) its quotes and backslashes are escaped for that string, so it matches literally (an XPath string has no escapes: a value holding its quote or a backslash is refused). Outside quotes (`#{{input.id}}`) it is inserted as it is, but it may not change the selector\'s steps or engines: a value bringing `>>`, `engine=`, a leading `//` or a quoted text is refused. To match user text, quote its placeholder.',
    "- **Only `input.`** Other `{{…}}` text, such as `{{secrets.token}}`, is left as it is: there is no separate secrets namespace. Secrets are input values under keys starting with `secret` (`secretPassword`, `secrets: {…}`, at any depth), used as `{{input.secretPassword}}`: their values are replaced by `[redacted]` in error messages, attempts, step results and the runner's logs (screenshots and traces show the page as it was).",
    '- **Giving values.** In the session\'s input (`POST /v1/sessions` `{"type": "flow", "input": {"steps": […], "baseUrl": "…"}}`), or with `sfw run flow.json --input \'{"baseUrl": "…"}\'`, which adds top-level keys (a value in the file\'s `input` object would win over them).',
    '',
    placeholderExamples(),
  ].join('\n');
}

function limitsSection(): string {
  const timeout = (FLOW_STEP_SCHEMAS.click.properties.timeoutMs as Schema) ?? {};
  return [
    '## Limits',
    '',
    '| What | Limit | Checked |',
    '| --- | --- | --- |',
    `| Steps in a flow, and in each nested list (\`repeat\` steps, \`if\` branches) | ${n(MAX_FLOW_STEPS)} | at enqueue |`,
    `| Nesting of \`repeat\` and \`if\` | ${MAX_FLOW_DEPTH} deep | at enqueue |`,
    `| A \`repeat\`'s \`max\` passes | 1 to ${n(MAX_REPEAT_PASSES)} | at enqueue |`,
    `| Steps one session executes in all (each pass of a \`repeat\` counts its steps again; \`repeat\`, \`if\` and \`break\` count too) | ${n(MAX_FLOW_EXECUTED_STEPS)} | when it runs: the step going over fails |`,
    `| A step's \`timeoutMs\` | ${limitsOf(timeout)} ms, default ${n(DEFAULT_STEP_TIMEOUT_MS)} | at enqueue |`,
    `| The whole session | the session's \`timeoutMs\` (default ${n(DEFAULT_SESSION_TIMEOUT_MS)} ms): it bounds every step, including a \`waitFor\` \`ms\` pause, which \`timeoutMs\` does not apply to. At it the session fails (\`timed out after N ms\`), a script an \`evaluate\` or a \`press\` left the page stuck in is stopped, and the browser context is closed | when it runs |`,
    '',
    `Names (\`as\`) may not be ${[...RESERVED_NAMES].map(code).join(', ')}; two steps may share an \`as\` only when both have \`append: true\` (else the second is refused with its path, e.g. \`body.input.steps.2.steps.0.as\`). \`break\` is refused outside a \`repeat\`. Text Postgres cannot store (NUL, half of a UTF-16 pair) is refused in the input at enqueue, and replaced with U+FFFD in extracted values (see Results).`,
  ].join('\n');
}

function resultsSection(): string {
  const example = {
    extracted: { items: ['Apple', 'Banana', 'Cherry', 'Date', 'Elderberry', 'Fig'] },
    steps: [
      { action: 'goto', ok: true, ms: 412 },
      { action: 'extract', ok: true, ms: 9 },
      {
        action: 'repeat',
        ok: true,
        ms: 388,
        passes: [
          [
            { action: 'click', ok: true, ms: 61 },
            { action: 'extract', ok: true, ms: 7 },
          ],
        ],
      },
      { action: 'if', ok: true, ms: 3, branch: 'else', steps: [] },
    ],
  };
  return [
    '## Results',
    '',
    "A flow session's `result` is `{extracted, steps, warnings?}`:",
    '',
    '- `extracted`: each `as` of `extract` (a string, an attribute value or null, or a list with `all`; a list gathered across runs with `append`) and of `evaluate` (its JSON value).',
    '- `steps`: one entry per step run, in order: `{action, ok, ms}`, plus `error` (why it failed) and `warning` (what it changed to keep its output). A `repeat`\'s entry has `passes`: the step results of each pass; an `if`\'s has `branch` (`"then"` or `"else"`) and `steps`, the results of that branch.',
    '- `warnings`: present only when some output was changed to be stored, one line each, such as `extracted.title: 1 character replaced with U+FFFD (…)`.',
    '',
    'For instance (`jsonc`: a result, not a flow):',
    '',
    '```jsonc',
    formatJson(example),
    '```',
    '',
    "A step that fails ends the session as `failed`, with `errorMessage` `step N (action): why` (N counts the top-level steps from 1); a step inside a `repeat` or an `if` is named by its path in the input and the pass of each `repeat` holding it, innermost first: `step input.steps.2.steps.0 (click) failed in pass 3: why`, `step input.steps.1.then.0 (assert) failed: why`, `step input.steps.1.steps.1.steps.0 (evaluate) failed in pass 3 of input.steps.1.steps.1, pass 2 of input.steps.1: why`. With it comes the result so far, the failing step last with `ok: false`. Screenshots are artifacts: `screenshot` `name` becomes `<name>.png`, listed in the session's `artifacts`.",
  ].join('\n');
}

function examplesSection(): string {
  return [
    '## Examples',
    '',
    'Whole flows, from `examples/` (the integration test `test/integration/examples.test.ts` runs them against fixture pages):',
    '',
    ...FLOW_EXAMPLE_FILES.flatMap((file) => {
      const flow = JSON.parse(readFileSync(`${ROOT}${file}`, 'utf8')) as unknown;
      return [`\`${file}\`:`, '', json(flow), ''];
    }),
    '```sh\nnpx sfw run examples/login-check.json --input \'{"baseUrl": "https://shop.example.com", "email": "ada@example.com", "secretPassword": "…"}\'\nnpx sfw run examples/paginated-scrape.json --input \'{"listUrl": "https://shop.example.com/products?page=1"}\'\n```',
  ].join('\n');
}

export function renderFlowDocs(): string {
  const inputSchema = FlowInput as Schema;
  const toc = ACTIONS.map((a) => `[${a}](#${a.toLowerCase()})`).join(' · ');
  return [
    '<!-- Generated by `npm run docs:flows` (scripts/gen-flow-docs.ts) from src/protocol/flow.ts: edit the schemas, not this file. -->',
    '',
    '# Flows',
    '',
    `A \`flow\` session runs JSON steps in order on one browser page. ${String(inputSchema.description)} A bad flow is refused at enqueue with 400 and the path of the bad field (\`body.input.steps.3.as\`); /openapi.json describes the same input as the \`FlowInput\` component.`,
    '',
    fieldTable(inputSchema),
    '',
    '```sh',
    `curl -s localhost:3000/v1/sessions -H 'content-type: application/json' -d '${JSON.stringify({
      type: 'flow',
      input: {
        steps: [
          { action: 'goto', url: 'https://example.com' },
          { action: 'extract', selector: 'h1', as: 'title' },
        ],
      },
    })}'`,
    '```',
    '',
    `Actions: ${toc}. Steps: ${LEAF_ACTIONS.map(code).join(', ')}; control steps: ${Object.keys(CONTROL_SCHEMAS).map(code).join(', ')}. A step with a selector acts on its first match (\`extract\` \`all\` and \`assert\` \`count\` on every match) and waits for it up to the step's timeout, ${n(DEFAULT_STEP_TIMEOUT_MS)} ms unless \`timeoutMs\` says otherwise.`,
    '',
    '## Actions',
    '',
    ...ACTIONS.flatMap((a) => [actionSection(a), '']),
    conditionSection(),
    '',
    placeholdersSection(),
    '',
    limitsSection(),
    '',
    resultsSection(),
    '',
    examplesSection(),
    '',
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = renderFlowDocs();
  if (process.argv.includes('--check')) {
    const current = readFileSync(FLOW_DOCS_PATH, 'utf8');
    if (current !== text) {
      console.error('docs/flows.md is out of date: run npm run docs:flows');
      process.exit(1);
    }
  } else {
    writeFileSync(FLOW_DOCS_PATH, text);
    console.log(`wrote ${FLOW_DOCS_PATH}`);
  }
}
