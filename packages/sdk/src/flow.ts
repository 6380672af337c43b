/**
 * The built-in `flow` session type: JSON steps run in order on one page. Strings may hold `{{input.x}}`
 * placeholders, filled from the session's input. Every step takes an optional `timeoutMs`:
 * its own deadline (1 to 600,000 ms).
 */

export type GotoStep = {
  action: 'goto';
  url: string;
  timeoutMs?: number;
};
export type ClickStep = {
  action: 'click';
  selector: string;
  timeoutMs?: number;
};
export type FillStep = {
  action: 'fill';
  selector: string;
  value: string;
  timeoutMs?: number;
};
export type PressStep = {
  action: 'press';
  key: string;
  selector?: string;
  timeoutMs?: number;
};
export type SelectStep = {
  action: 'select';
  selector: string;
  value: string;
  timeoutMs?: number;
};
export type CheckStep = {
  action: 'check';
  selector: string;
  timeoutMs?: number;
};
export type UncheckStep = {
  action: 'uncheck';
  selector: string;
  timeoutMs?: number;
};
export type HoverStep = {
  action: 'hover';
  selector: string;
  timeoutMs?: number;
};
/** Exactly one of selector (with an optional state), ms, url (a glob) or text (within an optional selector). */
export type WaitForStep = {
  action: 'waitFor';
  selector?: string;
  ms?: number;
  url?: string;
  text?: string;
  state?: 'attached' | 'detached' | 'visible' | 'hidden';
  timeoutMs?: number;
};
/**
 * Text (or `attribute`) of the first match, or of every match with `all`, kept as `extracted[as]`;
 * with `append`, added to the list `extracted[as]` (the matches of `all` concatenated) each time it runs.
 */
export type ExtractStep = {
  action: 'extract';
  selector: string;
  as: string;
  attribute?: string;
  all?: boolean;
  append?: boolean;
  timeoutMs?: number;
};
/** One or more of text, visible or count. */
export type AssertStep = {
  action: 'assert';
  selector: string;
  text?: string;
  visible?: boolean;
  count?: number;
  timeoutMs?: number;
};
export type ScreenshotStep = {
  action: 'screenshot';
  name: string;
  fullPage?: boolean;
  timeoutMs?: number;
};
/** Page JavaScript; refused unless the API allows it (ALLOW_FLOW_EVALUATE). */
export type EvaluateStep = {
  action: 'evaluate';
  expression: string;
  as?: string;
  timeoutMs?: number;
};

/** Checked once, without waiting: an element's state, the page URL (a glob), or text on the page or in a selector. */
export type FlowCondition =
  | { selector: string; state: 'visible' | 'hidden' | 'enabled' | 'disabled' | 'attached' | 'detached' }
  | { url: string }
  | { text: string; selector?: string };
/** Runs `steps` up to `max` times (1 to 1000), stopping after a pass when `until` holds, or at a `break`. */
export type RepeatStep = {
  action: 'repeat';
  steps: FlowStep[];
  until?: FlowCondition;
  max: number;
};
/** Runs `then` when `when` holds, else `else`. */
export type IfStep = {
  action: 'if';
  when: FlowCondition;
  then: FlowStep[];
  else?: FlowStep[];
};
/** Leaves the innermost `repeat`. */
export type BreakStep = {
  action: 'break';
};

export type FlowStep =
  | RepeatStep
  | IfStep
  | BreakStep
  | GotoStep
  | ClickStep
  | FillStep
  | PressStep
  | SelectStep
  | CheckStep
  | UncheckStep
  | HoverStep
  | WaitForStep
  | ExtractStep
  | AssertStep
  | ScreenshotStep
  | EvaluateStep;

export type FlowAction = FlowStep['action'];

/** Input of a flow session: steps, plus values for `{{input.x}}` placeholders (top-level keys or `input`). */
export type FlowSessionInput = {
  steps: FlowStep[];
  [key: string]: unknown;
};

export type FlowStepResult = {
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
};

/** A flow session's result. */
export type FlowResult = {
  extracted: Record<string, unknown>;
  steps: FlowStepResult[];
  /** One line per kept-but-changed output (`extracted.<as>: …`); absent when there is none. */
  warnings?: string[];
};
