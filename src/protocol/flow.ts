import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value, ValueErrorType } from '@sinclair/typebox/value';
import { fillSelector, fillText, hasPlaceholder } from './placeholders.js';

/**
 * Steps of the built-in `flow` session type. The server checks a flow at enqueue with these schemas;
 * the runner executes the same shapes.
 */
const Str = (maxLength = 4096) => Type.String({ minLength: 1, maxLength });
const Selector = Str();
const StepTimeout = Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 }));

export const FLOW_STEP_SCHEMAS = {
  goto: Type.Object(
    { action: Type.Literal('goto'), url: Str(8192), timeoutMs: StepTimeout },
    { additionalProperties: false },
  ),
  click: Type.Object(
    { action: Type.Literal('click'), selector: Selector, timeoutMs: StepTimeout },
    { additionalProperties: false },
  ),
  fill: Type.Object(
    {
      action: Type.Literal('fill'),
      selector: Selector,
      value: Type.String({ maxLength: 65536 }),
      timeoutMs: StepTimeout,
    },
    { additionalProperties: false },
  ),
  press: Type.Object(
    {
      action: Type.Literal('press'),
      key: Str(64),
      selector: Type.Optional(Selector),
      timeoutMs: StepTimeout,
    },
    { additionalProperties: false },
  ),
  select: Type.Object(
    {
      action: Type.Literal('select'),
      selector: Selector,
      value: Type.String({ maxLength: 4096 }),
      timeoutMs: StepTimeout,
    },
    { additionalProperties: false },
  ),
  check: Type.Object(
    { action: Type.Literal('check'), selector: Selector, timeoutMs: StepTimeout },
    { additionalProperties: false },
  ),
  uncheck: Type.Object(
    { action: Type.Literal('uncheck'), selector: Selector, timeoutMs: StepTimeout },
    { additionalProperties: false },
  ),
  hover: Type.Object(
    { action: Type.Literal('hover'), selector: Selector, timeoutMs: StepTimeout },
    { additionalProperties: false },
  ),
  waitFor: Type.Object(
    {
      action: Type.Literal('waitFor'),
      selector: Type.Optional(Selector),
      ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
      state: Type.Optional(
        Type.Union([
          Type.Literal('attached'),
          Type.Literal('detached'),
          Type.Literal('visible'),
          Type.Literal('hidden'),
        ]),
      ),
      timeoutMs: StepTimeout,
    },
    { additionalProperties: false },
  ),
  extract: Type.Object(
    {
      action: Type.Literal('extract'),
      selector: Selector,
      as: Type.String({ minLength: 1, maxLength: 200 }),
      attribute: Type.Optional(Str(200)),
      all: Type.Optional(Type.Boolean()),
      timeoutMs: StepTimeout,
    },
    { additionalProperties: false },
  ),
  assert: Type.Object(
    {
      action: Type.Literal('assert'),
      selector: Selector,
      text: Type.Optional(Type.String({ maxLength: 65536 })),
      visible: Type.Optional(Type.Boolean()),
      count: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
      timeoutMs: StepTimeout,
    },
    { additionalProperties: false },
  ),
  screenshot: Type.Object(
    {
      action: Type.Literal('screenshot'),
      name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
      fullPage: Type.Optional(Type.Boolean()),
      timeoutMs: StepTimeout,
    },
    { additionalProperties: false },
  ),
  evaluate: Type.Object(
    {
      action: Type.Literal('evaluate'),
      expression: Str(65536),
      as: Type.Optional(Str(200)),
      timeoutMs: StepTimeout,
    },
    { additionalProperties: false },
  ),
} as const satisfies Record<string, TSchema>;

export type FlowAction = keyof typeof FLOW_STEP_SCHEMAS;
export const FLOW_ACTIONS = Object.keys(FLOW_STEP_SCHEMAS) as FlowAction[];

export type FlowStep = { [A in FlowAction]: Static<(typeof FLOW_STEP_SCHEMAS)[A]> }[FlowAction];

export const FlowInput = Type.Object(
  {
    steps: Type.Array(Type.Object({ action: Type.String() }), { minItems: 1, maxItems: 1000 }),
    input: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: true },
);

/** Input of a flow session: steps, plus values for `{{input.x}}` placeholders (top-level keys or `input`). */
export interface FlowSessionInput {
  steps: FlowStep[];
  [key: string]: unknown;
}

export interface FlowStepResult {
  action: FlowAction;
  ok: boolean;
  ms: number;
  error?: string;
  /** Something the step changed to keep its output, e.g. characters Postgres cannot store replaced. */
  warning?: string;
}

export interface FlowResult {
  extracted: Record<string, unknown>;
  steps: FlowStepResult[];
  /** One line per kept-but-changed output (`extracted.<as>: …`); absent when there is none. */
  warnings?: string[];
}

/** Names an `as` may not take: on a JavaScript object they reach the prototype, not a value. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export function reservedNameMessage(name: string): string {
  return `"${name}" is reserved (__proto__, constructor and prototype cannot name a value): choose another name`;
}

/** Finds the first problem in a flow input, as `{path, message}` with a path under `input`, or null. */
export function checkFlowInput(input: unknown): { path: string; message: string } | null {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return { path: 'input', message: 'must be an object with a steps array' };
  }
  const steps = (input as { steps?: unknown }).steps;
  if (!Array.isArray(steps)) return { path: 'input.steps', message: 'must be an array of steps' };
  if (steps.length === 0) return { path: 'input.steps', message: 'must have at least one step' };
  if (steps.length > 1000) return { path: 'input.steps', message: 'must have at most 1000 steps' };
  for (const [i, step] of steps.entries()) {
    const at = `input.steps.${i}`;
    if (typeof step !== 'object' || step === null || Array.isArray(step))
      return { path: at, message: 'must be an object' };
    const action = (step as { action?: unknown }).action;
    if (typeof action !== 'string') return { path: `${at}.action`, message: 'is required' };
    if (!Object.hasOwn(FLOW_STEP_SCHEMAS, action)) {
      return {
        path: `${at}.action`,
        message: `unknown action "${action.slice(0, 50)}"; one of ${FLOW_ACTIONS.join(', ')}`,
      };
    }
    const schema = FLOW_STEP_SCHEMAS[action as FlowAction];
    const first = Value.Errors(schema, step).First();
    if (first) {
      const field = first.path.replace(/^\//, '').replace(/\//g, '.');
      const missing = first.type === ValueErrorType.ObjectRequiredProperty;
      return { path: field ? `${at}.${field}` : at, message: missing ? 'is required' : first.message };
    }
    if (action === 'waitFor') {
      const s = step as { selector?: string; ms?: number };
      if ((s.selector === undefined) === (s.ms === undefined))
        return { path: at, message: 'waitFor needs exactly one of selector or ms' };
    }
    if (action === 'assert') {
      const s = step as { text?: string; visible?: boolean; count?: number };
      if (s.text === undefined && s.visible === undefined && s.count === undefined) {
        return { path: at, message: 'assert needs one of text, visible or count' };
      }
    }
    const problem = checkFilled(step as { selector?: string; as?: string }, input as Record<string, unknown>);
    if (problem) return { path: `${at}.${problem.field}`, message: problem.message };
  }
  return null;
}

/**
 * What placeholders make of a step's selector and `as`, with the values the input has (a placeholder
 * without a value fails its step when it runs, with its name).
 */
function checkFilled(
  step: { selector?: string; as?: string },
  input: Record<string, unknown>,
): { field: string; message: string } | null {
  if (step.as !== undefined) {
    const filled = hasPlaceholder(step.as) ? fillText(step.as, input) : { text: step.as };
    if ('text' in filled && RESERVED_NAMES.has(filled.text))
      return { field: 'as', message: reservedNameMessage(filled.text) };
  }
  if (step.selector !== undefined && hasPlaceholder(step.selector)) {
    const filled = fillSelector(step.selector, input);
    if ('refused' in filled) return { field: 'selector', message: filled.refused };
  }
  return null;
}
