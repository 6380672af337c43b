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
/** Exactly one of selector (with an optional state) or ms. */
export type WaitForStep = {
  action: 'waitFor';
  selector?: string;
  ms?: number;
  state?: 'attached' | 'detached' | 'visible' | 'hidden';
  timeoutMs?: number;
};
/** Text (or `attribute`) of the first match, or of every match with `all`, kept as `extracted[as]`. */
export type ExtractStep = {
  action: 'extract';
  selector: string;
  as: string;
  attribute?: string;
  all?: boolean;
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

export type FlowStep =
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
};

/** A flow session's result. */
export type FlowResult = {
  extracted: Record<string, unknown>;
  steps: FlowStepResult[];
  /** One line per kept-but-changed output (`extracted.<as>: …`); absent when there is none. */
  warnings?: string[];
};
