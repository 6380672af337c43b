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
      url: Type.Optional(Str(8192)),
      text: Type.Optional(Type.String({ minLength: 1, maxLength: 65536 })),
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
      append: Type.Optional(Type.Boolean()),
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

/** A condition of `repeat`/`if`, checked once, without waiting. */
export const FlowConditionSchema = Type.Union([
  Type.Object(
    {
      selector: Selector,
      state: Type.Union([
        Type.Literal('visible'),
        Type.Literal('hidden'),
        Type.Literal('enabled'),
        Type.Literal('disabled'),
        Type.Literal('attached'),
        Type.Literal('detached'),
      ]),
    },
    { additionalProperties: false },
  ),
  Type.Object({ url: Str(8192) }, { additionalProperties: false }),
  Type.Object(
    { text: Type.String({ minLength: 1, maxLength: 65536 }), selector: Type.Optional(Selector) },
    { additionalProperties: false },
  ),
]);
export type FlowCondition = Static<typeof FlowConditionSchema>;

/** Nested steps: each is checked on its own (checkFlowInput walks them), like the top-level ones. */
const NestedSteps = Type.Array(Type.Object({ action: Type.String() }), { maxItems: 1000 });

/** Control steps: their nested steps are typed by the hand-written types below. */
const CONTROL_SCHEMAS = {
  repeat: Type.Object(
    {
      action: Type.Literal('repeat'),
      steps: NestedSteps,
      until: Type.Optional(FlowConditionSchema),
      max: Type.Integer({ minimum: 1, maximum: 1000 }),
    },
    { additionalProperties: false },
  ),
  if: Type.Object(
    {
      action: Type.Literal('if'),
      when: FlowConditionSchema,
      then: NestedSteps,
      else: Type.Optional(NestedSteps),
    },
    { additionalProperties: false },
  ),
  break: Type.Object({ action: Type.Literal('break') }, { additionalProperties: false }),
} as const satisfies Record<string, TSchema>;

const ALL_SCHEMAS: Record<string, TSchema> = { ...FLOW_STEP_SCHEMAS, ...CONTROL_SCHEMAS };

type LeafAction = keyof typeof FLOW_STEP_SCHEMAS;
export type FlowAction = LeafAction | keyof typeof CONTROL_SCHEMAS;
export const FLOW_ACTIONS = Object.keys(ALL_SCHEMAS) as FlowAction[];

/** Nesting of `repeat`/`if` allowed in a flow. */
export const MAX_FLOW_DEPTH = 8;
/** Steps a flow session may execute in all (passes of a `repeat` count each time). */
export const MAX_FLOW_EXECUTED_STEPS = 10_000;

export type FlowLeafStep = { [A in LeafAction]: Static<(typeof FLOW_STEP_SCHEMAS)[A]> }[LeafAction];
/** Runs `steps` up to `max` times, stopping after a pass when `until` holds, or at a `break`. */
export interface RepeatStep {
  action: 'repeat';
  steps: FlowStep[];
  until?: FlowCondition;
  max: number;
}
/** Runs `then` when `when` holds, else `else`. */
export interface IfStep {
  action: 'if';
  when: FlowCondition;
  then: FlowStep[];
  else?: FlowStep[];
}
/** Leaves the innermost `repeat`. */
export interface BreakStep {
  action: 'break';
}
export type FlowStep = FlowLeafStep | RepeatStep | IfStep | BreakStep;

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
  /** A `repeat`'s passes, each with the results of its steps. */
  passes?: FlowStepResult[][];
  /** The branch an `if` took, and the results of its steps (in `steps`). */
  branch?: 'then' | 'else';
  steps?: FlowStepResult[];
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
  return checkSteps(
    steps,
    'input.steps',
    { depth: 0, inRepeat: false, names: new Map() },
    input as Record<string, unknown>,
  );
}

interface WalkState {
  depth: number;
  inRepeat: boolean;
  /** Each `as` seen so far: whether its step appends, and where it is. */
  names: Map<string, { append: boolean; path: string }>;
}

function checkSteps(
  steps: unknown[],
  path: string,
  state: WalkState,
  input: Record<string, unknown>,
): { path: string; message: string } | null {
  for (const [i, step] of steps.entries()) {
    const problem = checkStep(step, `${path}.${i}`, state, input);
    if (problem) return problem;
  }
  return null;
}

function checkStep(
  step: unknown,
  at: string,
  state: WalkState,
  input: Record<string, unknown>,
): { path: string; message: string } | null {
  if (typeof step !== 'object' || step === null || Array.isArray(step))
    return { path: at, message: 'must be an object' };
  const action = (step as { action?: unknown }).action;
  if (typeof action !== 'string') return { path: `${at}.action`, message: 'is required' };
  if (!Object.hasOwn(ALL_SCHEMAS, action)) {
    return {
      path: `${at}.action`,
      message: `unknown action "${action.slice(0, 50)}"; one of ${FLOW_ACTIONS.join(', ')}`,
    };
  }
  const schema = ALL_SCHEMAS[action] as TSchema;
  const first = Value.Errors(schema, step).First();
  if (first) {
    const field = first.path.replace(/^\//, '').replace(/\//g, '.');
    const missing = first.type === ValueErrorType.ObjectRequiredProperty;
    return { path: field ? `${at}.${field}` : at, message: missing ? 'is required' : first.message };
  }
  if (action === 'break') {
    return state.inRepeat ? null : { path: at, message: 'break is only allowed inside a repeat' };
  }
  if (action === 'repeat' || action === 'if') {
    if (state.depth >= MAX_FLOW_DEPTH)
      return { path: at, message: `repeat and if may be nested ${MAX_FLOW_DEPTH} deep at most` };
    const inner: WalkState = { ...state, depth: state.depth + 1 };
    if (action === 'repeat') {
      const s = step as RepeatStep;
      if (s.until) {
        const problem = checkFilled(s.until as { selector?: string }, input);
        if (problem) return { path: `${at}.until.${problem.field}`, message: problem.message };
      }
      return checkSteps(s.steps, `${at}.steps`, { ...inner, inRepeat: true }, input);
    }
    const s = step as IfStep;
    const problem = checkFilled(s.when as { selector?: string }, input);
    if (problem) return { path: `${at}.when.${problem.field}`, message: problem.message };
    return (
      checkSteps(s.then, `${at}.then`, inner, input) ??
      (s.else ? checkSteps(s.else, `${at}.else`, inner, input) : null)
    );
  }
  if (action === 'waitFor') {
    const s = step as { selector?: string; ms?: number; url?: string; text?: string; state?: string };
    const kinds = [s.ms, s.url, s.text ?? s.selector].filter((v) => v !== undefined).length;
    if (kinds !== 1) return { path: at, message: 'waitFor needs exactly one of selector, ms, url or text' };
    if (s.state !== undefined && (s.selector === undefined || s.text !== undefined))
      return { path: `${at}.state`, message: 'state goes with a selector (without text)' };
  }
  if (action === 'assert') {
    const s = step as { text?: string; visible?: boolean; count?: number };
    if (s.text === undefined && s.visible === undefined && s.count === undefined) {
      return { path: at, message: 'assert needs one of text, visible or count' };
    }
  }
  const problem = checkFilled(step, input);
  if (problem) return { path: `${at}.${problem.field}`, message: problem.message };
  const as = (step as { as?: string }).as;
  if (as !== undefined) {
    const filled = hasPlaceholder(as) ? fillText(as, input) : { text: as };
    const name = 'text' in filled ? filled.text : as;
    const append = (step as { append?: boolean }).append === true;
    const seen = state.names.get(name);
    if (seen && !(seen.append && append)) {
      return {
        path: `${at}.as`,
        message: `"${name.slice(0, 200)}" is already the name of ${seen.path}: give each value its own name, or set append: true on both steps to collect them in a list`,
      };
    }
    state.names.set(name, { append, path: at });
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
