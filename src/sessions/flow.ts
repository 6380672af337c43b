import type { CDPSession, Locator, Page } from 'playwright-core';
import { watchNavigationFailures, type NavigationFailures } from '../browser/egress-page.js';
import {
  CONDITION_TIMEOUT_MS,
  DEFAULT_STEP_TIMEOUT_MS,
  DEFAULT_WAIT_STATE,
  MAX_FLOW_EXECUTED_STEPS,
  RESERVED_NAMES,
  reservedNameMessage,
  type FlowAction,
  type FlowCondition,
  type FlowLeafStep,
  type FlowResult,
  type FlowSessionInput,
  type FlowStep,
  type FlowStepResult,
} from '../protocol/flow.js';
import { fillSelector, fillText, type Filled } from '../protocol/placeholders.js';
import { storableJson, storableText, stripAnsi } from '../protocol/text.js';

export interface FlowOptions {
  signal: AbortSignal;
  /** Timeout of a step without its own `timeoutMs`. */
  defaultStepTimeoutMs?: number;
  /** `evaluate` steps run page JavaScript given by the enqueuer: off unless the runner allows it. */
  allowEvaluate?: boolean;
  /** Throws to refuse a `goto` URL (an allowlist); called after placeholders are filled. */
  checkUrl?: (url: string) => void;
  onScreenshot: (name: string, png: Buffer) => Promise<void>;
  /** Told of each step as it runs (a live view such as sfw dev's); it cannot change the run. */
  onStep?: (event: FlowStepEvent) => void;
}

/**
 * A step as it runs. `start`: a repeat or an if begins (an if once its branch is chosen), its steps
 * follow one level deeper; `pass`: a repeat's pass begins (1-based); `end`: any step is done, with its
 * result. `depth` is 0 for the flow's own steps.
 */
export type FlowStepEvent =
  | { kind: 'start'; step: FlowStep; depth: number; branch?: 'then' | 'else' }
  | { kind: 'pass'; step: FlowStep; depth: number; pass: number }
  | { kind: 'end'; step: FlowStep; depth: number; result: FlowStepResult };

/** A pass of a `repeat` a failed step ran in: the repeat's path and the pass, 1-based. */
export interface FlowPass {
  path: string;
  pass: number;
}

/** Where a step failed: its path in the input (`input.steps.2.steps.0`), action, and enclosing passes. */
export interface FlowStepPlace {
  path: string;
  action: FlowAction;
  /** The passes of the repeats holding the step, outermost first ([]: in none). */
  passes: FlowPass[];
}

/**
 * A flow step failed: which one, why (Playwright's message), and what the steps before it produced. A
 * top-level step is named by its number (`step 3 (click): …`); a nested one by its path and the pass it
 * failed in (`step input.steps.2.steps.0 (click) failed in pass 3: …`).
 */
export class FlowStepError extends Error {
  override readonly name = 'FlowStepError';
  /** The top-level step holding the failed one, 0-based, as in `input.steps.N`. */
  readonly index: number;
  /** The failed step's action (a nested step's own, not its repeat's or if's). */
  readonly action: FlowAction;
  /** The failed step's path in the input, e.g. `input.steps.2.steps.0`. */
  readonly path: string;
  readonly passes: FlowPass[];
  readonly reason: string;
  readonly result: FlowResult;

  constructor(index: number, place: FlowStepPlace, reason: string, result: FlowResult) {
    super(`${describePlace(index, place)}: ${reason}`);
    this.index = index;
    this.action = place.action;
    this.path = place.path;
    this.passes = place.passes;
    this.reason = reason;
    this.result = result;
  }
}

/** `step 3 (click)` for a top-level step; `step input.steps.2.steps.0 (click) failed in pass 3` nested. */
function describePlace(index: number, { path, action, passes }: FlowStepPlace): string {
  if (path === `input.steps.${index}`) return `step ${index + 1} (${action})`;
  const inner = [...passes].reverse();
  const when =
    inner.length === 0
      ? ''
      : inner.length === 1
        ? ` in pass ${inner[0]?.pass}`
        : ` in ${inner.map((p) => `pass ${p.pass} of ${p.path}`).join(', ')}`;
  return `step ${path} (${action}) failed${when}`;
}

function filled(result: Filled): string {
  if ('text' in result) return result.text;
  throw new Error('missing' in result ? result.missing : result.refused);
}

/** Replaces `{{input.x}}` with input.input.x (or input.x); a missing value is an error. */
export function fillPlaceholders(text: string, input: Record<string, unknown>): string {
  return filled(fillText(text, input));
}

/** Fills a step's placeholders; a selector's as text (src/protocol/placeholders.ts), never as syntax. */
function withPlaceholders<S extends FlowLeafStep | FlowCondition>(
  step: S,
  input: Record<string, unknown>,
): S {
  const out: Record<string, unknown> = { ...step };
  for (const [k, v] of Object.entries(out)) {
    if (k === 'action' || typeof v !== 'string') continue;
    out[k] = filled(k === 'selector' ? fillSelector(v, input) : fillText(v, input));
  }
  if (typeof out.as === 'string' && RESERVED_NAMES.has(out.as)) throw new Error(reservedNameMessage(out.as));
  return out as S;
}

/** Playwright's messages carry a multi-line call log: keep it, on one line, without colours, within bounds. */
function describeError(err: unknown): string {
  const text = stripAnsi(err instanceof Error ? err.message : String(err))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^=+ *(logs)? *=+$/.test(l))
    .join(' ');
  // Cut before making it storable: a cut through a UTF-16 pair leaves half of it.
  return storableText(text.length > 2000 ? `${text.slice(0, 2000)}…` : text).text;
}

function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new Error(typeof r === 'string' ? r : 'aborted');
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return abortable(new Promise<void>((r) => setTimeout(r, ms)), signal);
}

/** How long a page whose step timed out has to answer before it is taken to be stuck in a script. */
const PAGE_ANSWER_MS = 250;

/**
 * Runs page work that Playwright gives no deadline of its own (page JavaScript, a key press to the focused
 * element) within `timeout` ms: past it the step fails with `<what> timed out after N ms`. Then, and when
 * the session is aborted meanwhile, a page whose main thread does not answer is stuck in a script (such
 * as `while (true) {}`): that script is stopped (CDP Runtime.terminateExecution, which Chromium runs even
 * while the page's thread is busy), so what comes next (the failure screenshot, the next session of a
 * reused context, closing the context) finds a usable page. The CDP session is opened first: a stuck
 * page cannot be attached to.
 */
async function withDeadline<T>(
  page: Page,
  what: string,
  timeout: number,
  signal: AbortSignal,
  work: () => Promise<T>,
): Promise<T> {
  const cdp = await page.context().newCDPSession(page);
  let timer: NodeJS.Timeout | undefined;
  let onAbort = () => {};
  let expired = false;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      reject(new Error(`${what} timed out after ${timeout} ms`));
    }, timeout);
    onAbort = () => {
      expired = true;
      reject(abortReason(signal));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  const running = work();
  running.catch(() => {});
  try {
    return await Promise.race([running, deadline]);
  } catch (err) {
    if (!expired) throw err;
    const stopped = await stopStuckScript(cdp);
    if (signal.aborted || !stopped || !(err instanceof Error)) throw err;
    throw new Error(`${err.message}: the page was still running JavaScript, which was stopped`);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    void cdp.detach().catch(() => {});
  }
}

/** Stops the script a page is stuck in, if it does not answer; says whether it did. */
async function stopStuckScript(cdp: CDPSession): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const answered = await Promise.race([
    cdp.send('Runtime.evaluate', { expression: '0' }).then(
      () => true,
      () => true, // gone (closed, navigated): nothing to stop
    ),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), PAGE_ANSWER_MS);
    }),
  ]);
  clearTimeout(timer);
  if (answered) return false;
  return cdp.send('Runtime.terminateExecution').then(
    () => true,
    () => false,
  );
}

/** Retries `check` until it returns null (the condition holds) or the timeout passes. */
async function pollUntil(
  check: () => Promise<string | null>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  for (;;) {
    const problem = await check();
    if (problem === null) return;
    if (Date.now() >= deadline) throw new Error(`${problem} (after ${timeoutMs} ms)`);
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())), signal);
    delay = Math.min(delay * 2, 250);
  }
}

/** A URL glob as a RegExp: `**` matches anything, `*` anything but `/`; every other character is itself. */
export function globToRegExp(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      out += '.*';
      i++;
    } else if (c === '*') out += '[^/]*';
    else out += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** Checks a condition once, without waiting: null when it holds, else what was found instead. */
async function conditionProblem(page: Page, cond: FlowCondition): Promise<string | null> {
  if ('url' in cond) {
    const url = page.url();
    return globToRegExp(cond.url).test(url)
      ? null
      : `expected the URL to match ${JSON.stringify(cond.url)}, it is ${JSON.stringify(url.slice(0, 500))}`;
  }
  if ('text' in cond) {
    const where = cond.selector ?? 'body';
    const found = await page
      .locator(where)
      // The rendered text (innerText): script and style contents are not text on the page.
      .evaluateAll(
        (els, t) =>
          els.some((el) => (el instanceof HTMLElement ? el.innerText : (el.textContent ?? '')).includes(t)),
        cond.text,
      );
    return found ? null : `expected ${JSON.stringify(where)} to contain text ${JSON.stringify(cond.text)}`;
  }
  const loc = page.locator(cond.selector);
  const n = await loc.count();
  let holds: boolean;
  switch (cond.state) {
    case 'attached':
      holds = n > 0;
      break;
    case 'detached':
      holds = n === 0;
      break;
    case 'visible':
      holds = n > 0 && (await loc.first().isVisible());
      break;
    case 'hidden':
      holds = n === 0 || !(await loc.first().isVisible());
      break;
    case 'enabled':
      holds = n > 0 && (await loc.first().isEnabled({ timeout: CONDITION_TIMEOUT_MS }));
      break;
    case 'disabled':
      holds = n > 0 && (await loc.first().isDisabled({ timeout: CONDITION_TIMEOUT_MS }));
      break;
  }
  return holds ? null : `expected ${JSON.stringify(cond.selector)} to be ${cond.state}`;
}

function checkGotoUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`"${url.slice(0, 200)}" is not an absolute URL (use http:// or https://)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`only http and https URLs can be opened, not ${parsed.protocol.replace(':', '')}:`);
  }
}

async function extract(loc: Locator, attribute: string | undefined, all: boolean, timeout: number) {
  if (!all) {
    const first = loc.first();
    if (attribute === undefined) return ((await first.textContent({ timeout })) ?? '').trim();
    return first.getAttribute(attribute, { timeout });
  }
  await loc.first().waitFor({ state: 'attached', timeout });
  return loc.evaluateAll(
    (els, attr) => els.map((el) => (attr === null ? (el.textContent ?? '').trim() : el.getAttribute(attr))),
    attribute ?? null,
  );
}

/** Extracted values of a flow, by name: a Map, so no name reaches an object's prototype. */
class Extracted {
  readonly values = new Map<string, unknown>();
  readonly warnings: string[] = [];

  /** Stores a value as Postgres can hold it; says what was replaced (returned for the step's result). */
  set(name: string, value: unknown): string | undefined {
    const { value: stored, replaced } = storableJson(value);
    this.values.set(name, stored);
    return this.warn(name, replaced);
  }

  /** Adds a value (the items of a list with `all`) to the list under `name`. */
  append(name: string, value: unknown, all: boolean): string | undefined {
    const { value: stored, replaced } = storableJson(value);
    const list = this.values.get(name);
    const items = Array.isArray(list) ? (list as unknown[]) : [];
    if (all && Array.isArray(stored)) items.push(...(stored as unknown[]));
    else items.push(stored);
    this.values.set(name, items);
    return this.warn(name, replaced);
  }

  private warn(name: string, replaced: number): string | undefined {
    if (replaced === 0) return undefined;
    const warning = `${replaced} character${replaced === 1 ? '' : 's'} replaced with U+FFFD (NUL or half of a UTF-16 pair, which cannot be stored)`;
    this.warnings.push(`extracted.${name}: ${warning}`);
    return warning;
  }

  result(steps: FlowStepResult[]): FlowResult {
    const result: FlowResult = { extracted: Object.fromEntries(this.values), steps };
    if (this.warnings.length > 0) result.warnings = [...this.warnings];
    return result;
  }
}

async function runStep(
  page: Page,
  step: FlowLeafStep,
  timeout: number,
  extracted: Extracted,
  opts: FlowOptions,
): Promise<string | undefined> {
  const at = (selector: string) => page.locator(selector).first();
  switch (step.action) {
    case 'goto':
      checkGotoUrl(step.url);
      opts.checkUrl?.(step.url);
      await page.goto(step.url, { timeout, waitUntil: 'load' });
      return;
    case 'click':
      await at(step.selector).click({ timeout });
      return;
    case 'fill':
      await at(step.selector).fill(step.value, { timeout });
      return;
    case 'press':
      if (step.selector === undefined)
        await withDeadline(page, 'press', timeout, opts.signal, () => page.keyboard.press(step.key));
      else await at(step.selector).press(step.key, { timeout });
      return;
    case 'select':
      await at(step.selector).selectOption(step.value, { timeout });
      return;
    case 'check':
      await at(step.selector).check({ timeout });
      return;
    case 'uncheck':
      await at(step.selector).uncheck({ timeout });
      return;
    case 'hover':
      await at(step.selector).hover({ timeout });
      return;
    case 'waitFor':
      if (step.url !== undefined) {
        const url = step.url;
        await pollUntil(() => conditionProblem(page, { url }), timeout, opts.signal);
      } else if (step.text !== undefined) {
        const cond: FlowCondition = {
          text: step.text,
          ...(step.selector ? { selector: step.selector } : {}),
        };
        await pollUntil(() => conditionProblem(page, cond), timeout, opts.signal);
      } else if (step.selector !== undefined)
        await at(step.selector).waitFor({ state: step.state ?? DEFAULT_WAIT_STATE, timeout });
      else await sleep(step.ms ?? 0, opts.signal);
      return;
    case 'extract': {
      const value = await extract(page.locator(step.selector), step.attribute, step.all === true, timeout);
      if (step.append === true) return extracted.append(step.as, value, step.all === true);
      return extracted.set(step.as, value);
    }
    case 'assert': {
      const loc = page.locator(step.selector);
      const quoted = JSON.stringify(step.selector);
      await pollUntil(
        async () => {
          if (step.count !== undefined) {
            const n = await loc.count();
            if (n !== step.count) return `expected ${step.count} elements matching ${quoted}, found ${n}`;
          }
          if (step.visible !== undefined) {
            const visible = await loc.first().isVisible();
            if (visible !== step.visible) {
              return `expected ${quoted} to be ${step.visible ? 'visible' : 'hidden'}, it is ${visible ? 'visible' : 'hidden or missing'}`;
            }
          }
          if (step.text !== undefined) {
            if ((await loc.count()) === 0)
              return `expected ${quoted} to contain text ${JSON.stringify(step.text)}, no element matches`;
            const actual = (await loc.first().textContent({ timeout: 1000 })) ?? '';
            if (!actual.includes(step.text)) {
              return `expected ${quoted} to contain text ${JSON.stringify(step.text)}, got ${JSON.stringify(actual.trim().slice(0, 200))}`;
            }
          }
          return null;
        },
        timeout,
        opts.signal,
      );
      return;
    }
    case 'screenshot': {
      const png = await page.screenshot({ fullPage: step.fullPage === true, timeout, type: 'png' });
      await opts.onScreenshot(step.name, png);
      return;
    }
    case 'evaluate': {
      if (!opts.allowEvaluate) {
        throw new Error(
          'evaluate steps are disabled on this runner: start it with ALLOW_FLOW_EVALUATE=true (or --allow-flow-evaluate) to allow them',
        );
      }
      const expression = step.expression;
      const value: unknown = await withDeadline(page, 'evaluate', timeout, opts.signal, () =>
        page.evaluate(expression),
      );
      if (step.as !== undefined) return extracted.set(step.as, value);
      return;
    }
  }
}

/**
 * Runs the steps of a flow session on `page`. Returns `{extracted, steps}`; a failing step throws a
 * FlowStepError with its index, action and message, and the partial result.
 */
export async function runFlow(page: Page, input: FlowSessionInput, opts: FlowOptions): Promise<FlowResult> {
  // A navigation of the page that the runner's egress proxy stopped fails the step, saying why.
  const navigation = watchNavigationFailures(page);
  try {
    return await runSteps(page, input, opts, navigation);
  } finally {
    navigation.dispose();
  }
}

/**
 * A step failed; its result (with the error) is already in the result tree. `place`: where (absent: the
 * flow as a whole stopped, as at the step limit, told at the top-level step).
 */
class StepFailed extends Error {
  constructor(
    readonly reason: string,
    readonly place?: FlowStepPlace,
  ) {
    super(reason);
  }
}

interface Run {
  page: Page;
  input: FlowSessionInput;
  opts: FlowOptions;
  navigation: NavigationFailures;
  extracted: Extracted;
  defaultTimeout: number;
  executed: number;
  /** Nesting of the step running now (0: the flow's own steps). */
  depth: number;
  /** The passes of the repeats running now, outermost first. */
  passes: FlowPass[];
}

function tell(run: Run, event: FlowStepEvent): void {
  try {
    run.opts.onStep?.(event);
  } catch {
    // A view that fails does not fail the flow.
  }
}

/** Pushes a step's result and tells it. */
function done(run: Run, step: FlowStep, out: FlowStepResult[], result: FlowStepResult): void {
  out.push(result);
  tell(run, { kind: 'end', step, depth: run.depth, result });
}

async function runSteps(
  page: Page,
  input: FlowSessionInput,
  opts: FlowOptions,
  navigation: NavigationFailures,
): Promise<FlowResult> {
  const run: Run = {
    page,
    input,
    opts,
    navigation,
    extracted: new Extracted(),
    defaultTimeout: opts.defaultStepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS,
    executed: 0,
    depth: 0,
    passes: [],
  };
  const steps: FlowStepResult[] = [];
  for (const [index, raw] of input.steps.entries()) {
    const path = `input.steps.${index}`;
    try {
      await runOne(run, raw, steps, path);
    } catch (err) {
      if (err instanceof StepFailed)
        throw new FlowStepError(
          index,
          err.place ?? { path, action: raw.action, passes: [] },
          err.reason,
          run.extracted.result(steps),
        );
      throw err;
    }
  }
  return run.extracted.result(steps);
}

/** Runs a list of nested steps (at `path`, e.g. `input.steps.2.steps`) into `out`; says `break` when a `break` left it. */
async function runList(
  run: Run,
  steps: FlowStep[],
  out: FlowStepResult[],
  path: string,
): Promise<'break' | undefined> {
  run.depth++;
  try {
    for (const [i, step] of steps.entries()) {
      if ((await runOne(run, step, out, `${path}.${i}`)) === 'break') return 'break';
    }
    return undefined;
  } finally {
    run.depth--;
  }
}

async function runOne(
  run: Run,
  raw: FlowStep,
  out: FlowStepResult[],
  path: string,
): Promise<'break' | undefined> {
  const { opts } = run;
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  if (opts.signal.aborted) throw abortReason(opts.signal);
  if (++run.executed > MAX_FLOW_EXECUTED_STEPS) {
    const reason = `the flow ran more than ${MAX_FLOW_EXECUTED_STEPS} steps (repeat passes count each time): stopped`;
    done(run, raw, out, { action: raw.action, ok: false, ms: 0, error: reason });
    throw new StepFailed(reason);
  }
  if (raw.action === 'break') {
    done(run, raw, out, { action: 'break', ok: true, ms: 0 });
    return 'break';
  }
  if (raw.action === 'repeat' || raw.action === 'if') {
    const result: FlowStepResult = { action: raw.action, ok: true, ms: 0 };
    out.push(result);
    const holds = async (cond: FlowCondition) =>
      (await abortable(conditionProblem(run.page, withPlaceholders(cond, run.input)), opts.signal)) === null;
    try {
      if (raw.action === 'repeat') {
        const passes: FlowStepResult[][] = [];
        result.passes = passes;
        tell(run, { kind: 'start', step: raw, depth: run.depth });
        for (let pass = 0; pass < raw.max; pass++) {
          const results: FlowStepResult[] = [];
          passes.push(results);
          tell(run, { kind: 'pass', step: raw, depth: run.depth, pass: pass + 1 });
          run.passes.push({ path, pass: pass + 1 });
          try {
            if ((await runList(run, raw.steps, results, `${path}.steps`)) === 'break') break;
          } finally {
            run.passes.pop();
          }
          if (raw.until && (await holds(raw.until))) break;
        }
      } else {
        const branch = (await holds(raw.when)) ? 'then' : 'else';
        const results: FlowStepResult[] = [];
        result.branch = branch;
        result.steps = results;
        tell(run, { kind: 'start', step: raw, depth: run.depth, branch });
        const taken = branch === 'then' ? raw.then : (raw.else ?? []);
        const left = await runList(run, taken, results, `${path}.${branch}`);
        result.ms = elapsed();
        tell(run, { kind: 'end', step: raw, depth: run.depth, result });
        return left;
      }
    } catch (err) {
      if (opts.signal.aborted) throw abortReason(opts.signal);
      const reason = err instanceof StepFailed ? err.reason : describeError(run.navigation.take() ?? err);
      result.ok = false;
      result.ms = elapsed();
      result.error = reason;
      tell(run, { kind: 'end', step: raw, depth: run.depth, result });
      throw err instanceof StepFailed ? err : new StepFailed(reason, place(run, raw, path));
    }
    result.ms = elapsed();
    tell(run, { kind: 'end', step: raw, depth: run.depth, result });
    return undefined;
  }
  try {
    const step = withPlaceholders(raw, run.input);
    const warning = await abortable(
      Promise.race([
        runStep(run.page, step, step.timeoutMs ?? run.defaultTimeout, run.extracted, opts),
        run.navigation.next(),
      ]),
      opts.signal,
    );
    done(run, raw, out, { action: raw.action, ok: true, ms: elapsed(), ...(warning ? { warning } : {}) });
  } catch (err) {
    if (opts.signal.aborted) throw abortReason(opts.signal);
    const reason = describeError(run.navigation.take() ?? err);
    done(run, raw, out, { action: raw.action, ok: false, ms: elapsed(), error: reason });
    throw new StepFailed(reason, place(run, raw, path));
  }
  return undefined;
}

function place(run: Run, raw: FlowStep, path: string): FlowStepPlace {
  return { path, action: raw.action, passes: [...run.passes] };
}
