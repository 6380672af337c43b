import { Type, type SchemaOptions, type Static, type TSchema } from '@sinclair/typebox';
import { Value, ValueErrorType } from '@sinclair/typebox/value';
import { fillSelector, fillText, hasPlaceholder } from './placeholders.js';

/**
 * Steps of the built-in `flow` session type. The server checks a flow at enqueue with these schemas;
 * the runner executes the same shapes. Their descriptions and examples are the flow reference:
 * /openapi.json (src/server/openapi.ts) and docs/flows.md (`npm run docs:flows`) are made from them.
 */

/** Timeout of a step without its own `timeoutMs`. */
export const DEFAULT_STEP_TIMEOUT_MS = 15_000;
/** Bounds the reading of an element a condition has just found (a condition does not wait for one). */
export const CONDITION_TIMEOUT_MS = 5000;
/** The state `waitFor` waits for when it has a selector and no `state`. */
export const DEFAULT_WAIT_STATE = 'visible';
/** Steps of a flow, and of each nested list (`repeat` steps, `if` branches). */
export const MAX_FLOW_STEPS = 1000;
/** Passes a `repeat` may make at most (its required `max`). */
export const MAX_REPEAT_PASSES = 1000;

const doc = (description: string, example: unknown): SchemaOptions => ({ description, examples: [example] });
const Str = (maxLength: number, options: SchemaOptions) =>
  Type.String({ minLength: 1, maxLength, ...options });
const Selector = (description: string, example: string) =>
  Str(4096, doc(`${description} A Playwright selector (CSS, text=, xpath=, >> chains…).`, example));
const Action = <A extends string>(action: A) => Type.Literal(action, doc('What the step does.', action));
const StepTimeout = (what: string) =>
  Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 600_000,
      default: DEFAULT_STEP_TIMEOUT_MS,
      ...doc(`The step's deadline in ms, covering ${what}.`, 5000),
    }),
  );
const Step = (description: string, example: Record<string, unknown>): SchemaOptions => ({
  additionalProperties: false,
  ...doc(description, example),
});

export const FLOW_STEP_SCHEMAS = {
  goto: Type.Object(
    {
      action: Action('goto'),
      url: Str(
        8192,
        doc(
          'An absolute http:// or https:// URL (after placeholders are filled); the runner may refuse targets its policy forbids.',
          '{{input.baseUrl}}/login',
        ),
      ),
      timeoutMs: StepTimeout('the navigation up to the load event'),
    },
    Step(
      "Opens a URL in the page and waits for its load event. An HTTP error status does not fail it (assert on the page instead); a navigation error, or one the runner's egress policy stopped, does.",
      { action: 'goto', url: 'https://example.com/login' },
    ),
  ),
  click: Type.Object(
    {
      action: Action('click'),
      selector: Selector('The element to click (the first match).', 'button[type=submit]'),
      timeoutMs: StepTimeout('waiting for the element to be visible, stable and enabled, and the click'),
    },
    Step('Clicks the first element matching `selector`, once it is visible, stable and enabled.', {
      action: 'click',
      selector: 'text=Sign in',
    }),
  ),
  fill: Type.Object(
    {
      action: Action('fill'),
      selector: Selector(
        'The input, textarea or contenteditable element to fill (the first match).',
        '#email',
      ),
      value: Type.String({
        maxLength: 65536,
        ...doc('The text to put in it; "" empties it. Placeholders allowed.', '{{input.email}}'),
      }),
      timeoutMs: StepTimeout('waiting for the element to be editable, and the fill'),
    },
    Step('Replaces the value of the first element matching `selector` with `value`.', {
      action: 'fill',
      selector: '#email',
      value: 'ada@example.com',
    }),
  ),
  press: Type.Object(
    {
      action: Action('press'),
      key: Str(
        64,
        doc('A key as Playwright names it (Enter, Tab, ArrowDown, a, Control+A, Shift+Tab…).', 'Enter'),
      ),
      selector: Type.Optional(
        Selector(
          'The element to focus and press the key on; without it, the key goes to the focused element.',
          '#search',
        ),
      ),
      timeoutMs: StepTimeout(
        'waiting for the element and the key press (without selector, the key press alone: past it, a page stuck in its key handler has that script stopped)',
      ),
    },
    Step('Presses a key, on the first element matching `selector` or on whatever has focus.', {
      action: 'press',
      selector: '#search',
      key: 'Enter',
    }),
  ),
  select: Type.Object(
    {
      action: Action('select'),
      selector: Selector('The `<select>` element (the first match).', 'select#country'),
      value: Type.String({
        maxLength: 4096,
        ...doc('The value or the label of the option to select.', 'NL'),
      }),
      timeoutMs: StepTimeout('waiting for the element and the option'),
    },
    Step('Selects the option whose value or label is `value` in the first `<select>` matching `selector`.', {
      action: 'select',
      selector: 'select#country',
      value: 'NL',
    }),
  ),
  check: Type.Object(
    {
      action: Action('check'),
      selector: Selector('The checkbox or radio button (the first match).', '#terms'),
      timeoutMs: StepTimeout('waiting for the element and the check'),
    },
    Step('Checks a checkbox or radio button (nothing to do when it is checked already).', {
      action: 'check',
      selector: '#terms',
    }),
  ),
  uncheck: Type.Object(
    {
      action: Action('uncheck'),
      selector: Selector('The checkbox (the first match).', '#newsletter'),
      timeoutMs: StepTimeout('waiting for the element and the uncheck'),
    },
    Step('Unchecks a checkbox (nothing to do when it is unchecked already).', {
      action: 'uncheck',
      selector: '#newsletter',
    }),
  ),
  hover: Type.Object(
    {
      action: Action('hover'),
      selector: Selector('The element to move the mouse over (the first match).', 'nav >> text=Account'),
      timeoutMs: StepTimeout('waiting for the element and the hover'),
    },
    Step('Moves the mouse over the first element matching `selector` (menus, tooltips).', {
      action: 'hover',
      selector: '#menu',
    }),
  ),
  waitFor: Type.Object(
    {
      action: Action('waitFor'),
      selector: Type.Optional(
        Selector(
          'An element to wait for (in `state`); with `text`, where the text must appear.',
          '.results li',
        ),
      ),
      ms: Type.Optional(
        Type.Integer({
          minimum: 0,
          maximum: 600_000,
          ...doc('A pause of this many ms (timeoutMs does not apply).', 500),
        }),
      ),
      url: Type.Optional(
        Str(
          8192,
          doc(
            'A glob the page URL must match: `**` matches anything, `*` anything but `/`, every other character itself.',
            '**/account*',
          ),
        ),
      ),
      text: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 65536,
          ...doc(
            'A text the rendered text (innerText) of `selector`, else of the body, must contain.',
            'Order placed',
          ),
        }),
      ),
      state: Type.Optional(
        Type.Union(
          [
            Type.Literal('attached'),
            Type.Literal('detached'),
            Type.Literal('visible'),
            Type.Literal('hidden'),
          ],
          {
            default: DEFAULT_WAIT_STATE,
            ...doc(
              'What `selector` waits for: attached (in the DOM), detached (gone), visible or hidden (hidden or gone). Only with `selector`, without `text`.',
              'detached',
            ),
          },
        ),
      ),
      timeoutMs: StepTimeout('the wait for a selector, url or text (not ms)'),
    },
    Step(
      'Waits for one thing: an element (`selector`, in `state`), a URL (`url`), a text (`text`, within an optional `selector`) or a pause (`ms`). Give exactly one of selector, ms, url or text (text may go with a selector). URL and text are checked every 20 to 250 ms.',
      { action: 'waitFor', selector: '#spinner', state: 'detached' },
    ),
  ),
  extract: Type.Object(
    {
      action: Action('extract'),
      selector: Selector('The element(s) to read.', 'h1'),
      as: Type.String({
        minLength: 1,
        maxLength: 200,
        ...doc(
          "The name of the value in the result's `extracted`. Placeholders allowed; not __proto__, constructor or prototype; two steps may share a name only when both append.",
          'title',
        ),
      }),
      attribute: Type.Optional(
        Str(200, doc('An attribute to read instead of the text (null when the element has none).', 'href')),
      ),
      all: Type.Optional(
        Type.Boolean({
          default: false,
          ...doc(
            'Read every match, as a list in page order (waits for one match at least), instead of the first.',
            true,
          ),
        }),
      ),
      append: Type.Optional(
        Type.Boolean({
          default: false,
          ...doc(
            'Add the value to the list `extracted[as]` each time the step runs (the items of `all` are concatenated), instead of setting it: for values collected across repeat passes.',
            true,
          ),
        }),
      ),
      timeoutMs: StepTimeout('waiting for the element (with all: for a first match)'),
    },
    Step(
      "Reads the text (textContent, trimmed) or an `attribute` of the first element matching `selector`, or of every match with `all`, into the result's `extracted[as]`.",
      { action: 'extract', selector: 'a.product', attribute: 'href', all: true, as: 'links' },
    ),
  ),
  assert: Type.Object(
    {
      action: Action('assert'),
      selector: Selector('The element(s) to check.', '#account h1'),
      text: Type.Optional(
        Type.String({
          maxLength: 65536,
          ...doc("A text the first match's textContent must contain.", 'Welcome'),
        }),
      ),
      visible: Type.Optional(
        Type.Boolean(
          doc('Whether the first match must be visible (true) or hidden or missing (false).', true),
        ),
      ),
      count: Type.Optional(
        Type.Integer({
          minimum: 0,
          maximum: 1_000_000,
          ...doc('The exact number of elements that must match.', 3),
        }),
      ),
      timeoutMs: StepTimeout('the retries until every check holds'),
    },
    Step(
      'Checks the page, retrying until every check given holds or timeoutMs passes, then fails saying what it found. Give one or more of text, visible or count.',
      { action: 'assert', selector: '#account h1', text: 'Welcome' },
    ),
  ),
  screenshot: Type.Object(
    {
      action: Action('screenshot'),
      name: Type.String({
        minLength: 1,
        maxLength: 100,
        pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
        ...doc(
          "The artifact's name (letters, digits, ., _, -); .png is added when it has no extension. No placeholders.",
          'checkout',
        ),
      }),
      fullPage: Type.Optional(
        Type.Boolean({ default: false, ...doc('The whole scrollable page instead of the viewport.', true) }),
      ),
      timeoutMs: StepTimeout('the capture'),
    },
    Step(
      'Takes a PNG of the page and stores it as an artifact of the session (GET /v1/sessions/:id/artifacts/:name).',
      {
        action: 'screenshot',
        name: 'checkout',
        fullPage: true,
      },
    ),
  ),
  evaluate: Type.Object(
    {
      action: Action('evaluate'),
      expression: Str(
        65536,
        doc(
          'A JavaScript expression run in the page; a promise is awaited. Placeholders are filled in as raw text.',
          'document.title',
        ),
      ),
      as: Type.Optional(
        Str(
          200,
          doc(
            "The name of its value (JSON) in `extracted`; without it the value is dropped. Same rules as extract's `as`.",
            'pageTitle',
          ),
        ),
      ),
      timeoutMs: StepTimeout(
        'the expression and the promise it returns: past it the step fails with `evaluate timed out after N ms`, and a page still running the script (`while (true) {}`) has it stopped, so the page stays usable',
      ),
    },
    Step(
      'Runs page JavaScript given by the enqueuer. Disabled unless the runner allows it (ALLOW_FLOW_EVALUATE=true or --allow-flow-evaluate); elsewhere the step fails saying so.',
      { action: 'evaluate', expression: 'document.querySelectorAll("li").length', as: 'items' },
    ),
  ),
} as const satisfies Record<string, TSchema>;

const conditionSelector = (description: string) => Selector(description, '#next');
const conditionMembers = () => [
  Type.Object(
    {
      selector: conditionSelector('The element whose state is checked (the first match).'),
      state: Type.Union(
        [
          Type.Literal('visible'),
          Type.Literal('hidden'),
          Type.Literal('enabled'),
          Type.Literal('disabled'),
          Type.Literal('attached'),
          Type.Literal('detached'),
        ],
        doc(
          'visible, hidden (or missing), enabled, disabled (both need an element), attached (in the DOM) or detached (missing).',
          'disabled',
        ),
      ),
    },
    Step("An element's state.", { selector: '#next', state: 'disabled' }),
  ),
  Type.Object(
    {
      url: Str(
        8192,
        doc('A glob the page URL must match: `**` matches anything, `*` anything but `/`.', '**/account*'),
      ),
    },
    Step('The page URL.', { url: '**/checkout/done*' }),
  ),
  Type.Object(
    {
      text: Type.String({
        minLength: 1,
        maxLength: 65536,
        ...doc('A text to find in the rendered text (innerText).', 'No more results'),
      }),
      selector: Type.Optional(conditionSelector('Where to look: any matching element (default: the body).')),
    },
    Step('A text on the page, or within `selector`.', { text: 'No more results' }),
  ),
];
const CONDITION_DESCRIPTION =
  'A condition: an element state, a URL glob or a text, checked once, without waiting (put a waitFor before it to wait). Placeholders allowed in its strings.';

/** A condition of `repeat`/`if`, checked once, without waiting. */
export const FlowConditionSchema = Type.Union(
  conditionMembers(),
  doc(CONDITION_DESCRIPTION, { selector: '#next', state: 'disabled' }),
);
export type FlowCondition = Static<typeof FlowConditionSchema>;
/** The same condition as a field of a control step, with that field's own description. */
const Condition = (description: string, example: FlowCondition) =>
  Type.Union(conditionMembers(), { 'x-flow': 'condition', ...doc(description, example) });

/**
 * Nested steps: each is checked on its own (checkFlowInput walks them), like the top-level ones.
 * `x-flow: steps` marks them for the reference, where they are flow steps.
 */
const NestedSteps = (description: string, example: unknown[]) =>
  Type.Array(Type.Object({ action: Type.String() }), {
    maxItems: MAX_FLOW_STEPS,
    'x-flow': 'steps',
    ...doc(description, example),
  });

const nextPage = [
  { action: 'click', selector: '#next' },
  { action: 'waitFor', selector: 'li.item' },
];

/** Control steps: their nested steps are typed by the hand-written types below. */
export const CONTROL_SCHEMAS = {
  repeat: Type.Object(
    {
      action: Action('repeat'),
      steps: NestedSteps('The steps of one pass.', nextPage),
      until: Type.Optional(
        Condition('Checked after each pass: the repeat stops when it holds.', {
          selector: '#next',
          state: 'disabled',
        }),
      ),
      max: Type.Integer({
        minimum: 1,
        maximum: MAX_REPEAT_PASSES,
        ...doc('Passes at most (required): the repeat stops after this many even when until never held.', 50),
      }),
    },
    Step(
      "Runs `steps` again and again: up to `max` passes, stopping after a pass when `until` holds, or at a `break`. Reaching `max` is not a failure. The result's `passes` hold each pass's step results.",
      {
        action: 'repeat',
        max: 50,
        until: { selector: '#next', state: 'disabled' },
        steps: [
          ...nextPage,
          { action: 'extract', selector: 'li.item', all: true, append: true, as: 'items' },
        ],
      },
    ),
  ),
  if: Type.Object(
    {
      action: Action('if'),
      when: Condition('Checked once, when the step starts.', {
        selector: '#cookie-banner',
        state: 'visible',
      }),
      then: NestedSteps('The steps run when `when` holds.', [
        { action: 'click', selector: '#cookie-banner .accept' },
      ]),
      else: Type.Optional(
        NestedSteps('The steps run when it does not (none when absent).', [{ action: 'waitFor', ms: 100 }]),
      ),
    },
    Step(
      "Runs `then` when `when` holds, else `else`. The result's `branch` says which, `steps` holds its step results.",
      {
        action: 'if',
        when: { selector: '#cookie-banner', state: 'visible' },
        then: [{ action: 'click', selector: '#cookie-banner .accept' }],
      },
    ),
  ),
  break: Type.Object(
    { action: Action('break') },
    Step(
      'Leaves the innermost `repeat` at once, ending its current pass (refused at enqueue outside a repeat).',
      {
        action: 'break',
      },
    ),
  ),
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
    steps: Type.Array(Type.Object({ action: Type.String() }), {
      minItems: 1,
      maxItems: MAX_FLOW_STEPS,
      'x-flow': 'steps',
      ...doc('The steps, run in order on one page; the session fails at the first that fails.', [
        { action: 'goto', url: 'https://example.com' },
        { action: 'extract', selector: 'h1', as: 'title' },
      ]),
    }),
    input: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        ...doc(
          'Values for `{{input.x}}` placeholders, looked up here first, then among the top-level keys.',
          {
            baseUrl: 'https://example.com',
          },
        ),
      }),
    ),
  },
  {
    additionalProperties: true,
    ...doc(
      "A flow session's input: its steps, plus values for `{{input.x}}` placeholders, in `input` or as top-level keys.",
      { steps: [{ action: 'goto', url: '{{input.baseUrl}}/' }], baseUrl: 'https://example.com' },
    ),
  },
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
  if (steps.length > MAX_FLOW_STEPS)
    return { path: 'input.steps', message: `must have at most ${MAX_FLOW_STEPS} steps` };
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
