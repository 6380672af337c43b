import { describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import type { BrowserLease, BrowserPool } from '../../src/browser/pool.js';
import { uuidv7 } from '../../src/core/ids.js';
import { executeSession } from '../../src/sessions/execute.js';
import { FlowStepError, fillPlaceholders, runFlow, type FlowOptions } from '../../src/sessions/flow.js';
import { flowSessionType } from '../../src/sessions/registry.js';
import { checkFlowInput } from '../../src/protocol/flow.js';
import type { FlowSessionInput, FlowStep } from '../../src/protocol/flow.js';
import { useFixturePool } from '../helpers/chromium.js';
import { waitFor } from '../helpers/wait.js';

const fixture = useFixturePool();

async function withPage<T>(fn: (lease: BrowserLease) => Promise<T>): Promise<T> {
  const lease = await fixture.pool.acquire();
  try {
    return await fn(lease);
  } finally {
    await lease.release();
  }
}

function flow(steps: FlowStep[], extra: Record<string, unknown> = {}): FlowSessionInput {
  return { steps, ...extra };
}

function options(over: Partial<FlowOptions> = {}): FlowOptions & { shots: Map<string, Buffer> } {
  const shots = new Map<string, Buffer>();
  return {
    signal: new AbortController().signal,
    defaultStepTimeoutMs: 5000,
    onScreenshot: async (name, png) => {
      shots.set(name, png);
    },
    shots,
    ...over,
  };
}

describe('flow steps', () => {
  it('runs every action: goto, fill, press, select, check, uncheck, click, hover, waitFor, extract, assert, screenshot', async () => {
    const opts = options();
    const result = await withPage(({ page }) =>
      runFlow(
        page,
        flow(
          [
            { action: 'goto', url: `${fixture.site.url}/pages/form.html` },
            { action: 'fill', selector: '#name', value: '{{input.user.name}}' },
            { action: 'press', selector: '#name', key: 'Enter' },
            { action: 'assert', selector: '#pressed', text: 'key Enter' },
            { action: 'press', key: 'Tab' },
            { action: 'select', selector: '#color', value: '{{input.color}}' },
            { action: 'check', selector: '#agree' },
            { action: 'uncheck', selector: '#news' },
            { action: 'click', selector: '#submit' },
            { action: 'assert', selector: '#result', text: 'Hello Ada, color green, agree true, news false' },
            { action: 'extract', selector: '#result', as: 'greeting' },
            { action: 'extract', selector: '#link', as: 'href', attribute: 'href' },
            { action: 'screenshot', name: 'form' },
            { action: 'goto', url: `${fixture.site.url}/pages/slow.html?delay=300` },
            { action: 'waitFor', selector: '#late' },
            { action: 'waitFor', selector: '#spinner', state: 'detached' },
            { action: 'waitFor', ms: 10 },
            { action: 'assert', selector: '#tooltip', visible: false },
            { action: 'hover', selector: '#hover-target' },
            { action: 'assert', selector: '#tooltip', visible: true },
            { action: 'assert', selector: '#late', count: 1 },
            { action: 'screenshot', name: 'slow-full', fullPage: true },
          ],
          { color: 'green', input: { user: { name: 'Ada' } } },
        ),
        opts,
      ),
    );
    expect(result.extracted).toEqual({
      greeting: 'Hello Ada, color green, agree true, news false',
      href: '/pages/list.html',
    });
    expect(result.steps).toHaveLength(22);
    expect(result.steps.every((s) => s.ok && typeof s.ms === 'number' && s.ms >= 0)).toBe(true);
    expect(result.steps.map((s) => s.action)).toContain('hover');
    expect([...opts.shots.keys()]).toEqual(['form', 'slow-full']);
    for (const png of opts.shots.values())
      expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
  });

  it('extracts 60 items as text and as attributes, in page order', async () => {
    const result = await withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: `${fixture.site.url}/pages/list.html` },
          { action: 'extract', selector: 'li.item', as: 'names', all: true },
          { action: 'extract', selector: 'li.item', as: 'ids', attribute: 'data-id', all: true },
          { action: 'extract', selector: 'li.item', as: 'first' },
          { action: 'assert', selector: 'li.item', count: 60 },
        ]),
        options(),
      ),
    );
    const names = result.extracted.names as string[];
    expect(names).toHaveLength(60);
    expect(names[0]).toBe('Item 1');
    expect(names[59]).toBe('Item 60');
    expect(result.extracted.ids).toEqual(Array.from({ length: 60 }, (_, i) => String(i + 1)));
    expect(result.extracted.first).toBe('Item 1');
  });

  it('fails an assert with the step index, action, message and the partial result', async () => {
    const err = await withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: `${fixture.site.url}/pages/form.html` },
          { action: 'extract', selector: '#title', as: 'title' },
          { action: 'assert', selector: '#title', text: 'Log in', timeoutMs: 300 },
          { action: 'click', selector: '#submit' },
        ]),
        options(),
      ).then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    expect(err).toBeInstanceOf(FlowStepError);
    const e = err as FlowStepError;
    expect(e.index).toBe(2);
    expect(e.action).toBe('assert');
    expect(e.message).toMatch(
      /^step 3 \(assert\): expected "#title" to contain text "Log in", got "Sign up"/,
    );
    expect(e.result.extracted).toEqual({ title: 'Sign up' });
    expect(e.result.steps.map((s) => [s.action, s.ok])).toEqual([
      ['goto', true],
      ['extract', true],
      ['assert', false],
    ]);
  });

  it('times a step out at its timeoutMs with Playwright’s message', async () => {
    const started = Date.now();
    const err = (await withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: `${fixture.site.url}/pages/slow.html?delay=100000` },
          { action: 'click', selector: '#late', timeoutMs: 400 },
        ]),
        options(),
      ).catch((e: unknown) => e),
    )) as FlowStepError;
    expect(Date.now() - started).toBeLessThan(4000);
    expect(err).toBeInstanceOf(FlowStepError);
    expect(err.index).toBe(1);
    expect(err.message).toMatch(/^step 2 \(click\): .*Timeout 400ms exceeded/);
    expect(err.message).toContain("locator('#late')");
    // Playwright dims its call log with terminal colour codes: none reach the message or the step result.
    expect(err.message).not.toContain('\u001b');
    expect(err.message).not.toMatch(/\[2m|\[22m/);
    expect(err.result.steps[1]?.error).toBe(err.reason);
  });

  it('rejects non-http URLs, applies checkUrl, and runs evaluate only when allowed', async () => {
    await withPage(async ({ page }) => {
      const file = await runFlow(
        page,
        flow([{ action: 'goto', url: 'file:///etc/passwd' }]),
        options(),
      ).catch((e: Error) => e);
      expect(file).toBeInstanceOf(FlowStepError);
      expect((file as Error).message).toBe(
        'step 1 (goto): only http and https URLs can be opened, not file:',
      );

      const blocked = await runFlow(
        page,
        flow([{ action: 'goto', url: `${fixture.site.url}/pages/simple.html` }]),
        options({
          checkUrl: (url) => {
            throw new Error(`${new URL(url).host} is not on the allowlist`);
          },
        }),
      ).catch((e: Error) => e);
      expect((blocked as Error).message).toMatch(
        /^step 1 \(goto\): 127\.0\.0\.1:\d+ is not on the allowlist$/,
      );

      const steps: FlowStep[] = [
        { action: 'goto', url: `${fixture.site.url}/pages/simple.html` },
        { action: 'evaluate', expression: 'document.title', as: 'title' },
      ];
      const denied = await runFlow(page, flow(steps), options()).catch((e: Error) => e);
      expect((denied as Error).message).toMatch(/^step 2 \(evaluate\): evaluate steps are disabled/);
      // The setting is named as the runner reads it: the variable and the flag.
      expect((denied as Error).message).toContain('ALLOW_FLOW_EVALUATE=true');
      expect((denied as Error).message).toContain('--allow-flow-evaluate');
      const allowed = await runFlow(page, flow(steps), options({ allowEvaluate: true }));
      expect(allowed.extracted).toEqual({ title: 'Simple fixture' });
    });
  });

  it('stops at once when the signal aborts', async () => {
    const ac = new AbortController();
    const started = Date.now();
    const run = withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: `${fixture.site.url}/pages/simple.html` },
          { action: 'waitFor', ms: 30_000 },
        ]),
        options({ signal: ac.signal }),
      ),
    );
    setTimeout(() => ac.abort(new Error('cancelled by the runner')), 200);
    await expect(run).rejects.toThrow('cancelled by the runner');
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('evaluate and press without a selector: bounded by the step timeout', () => {
  const simple = () => `${fixture.site.url}/pages/simple.html`;
  const allowed = () => options({ allowEvaluate: true });
  const failing = (page: Page, steps: FlowStep[], opts = allowed()) =>
    runFlow(page, flow(steps), opts).catch((e: unknown) => e) as Promise<FlowStepError>;
  /** The page still works: Playwright reads it and runs page JavaScript at once. */
  async function usable(page: Page): Promise<void> {
    const started = Date.now();
    const after = await runFlow(
      page,
      flow([
        { action: 'extract', selector: 'h1', as: 'h1', timeoutMs: 2000 },
        { action: 'evaluate', expression: 'document.title', as: 'title', timeoutMs: 2000 },
      ]),
      allowed(),
    );
    expect(after.extracted).toEqual({ h1: 'Hello', title: 'Simple fixture' });
    const png = await page.screenshot({ timeout: 2000 });
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(Date.now() - started).toBeLessThan(3000);
  }

  it('an evaluate that never settles fails at its timeoutMs, else at the default step timeout', async () => {
    await withPage(async ({ page }) => {
      const started = Date.now();
      const err = await failing(page, [
        { action: 'goto', url: simple() },
        { action: 'evaluate', expression: 'new Promise(() => {})', timeoutMs: 300 },
      ]);
      expect(err).toBeInstanceOf(FlowStepError);
      // The page was not stuck (only the promise never settled): nothing to stop.
      expect(err.message).toBe('step 2 (evaluate): evaluate timed out after 300 ms');
      expect(err.result.steps[1]).toMatchObject({ action: 'evaluate', ok: false });
      expect(Date.now() - started).toBeLessThan(3000);
      await usable(page);
      // Without timeoutMs the flow's default step timeout applies.
      const byDefault = await failing(
        page,
        [{ action: 'evaluate', expression: 'new Promise(() => {})' }],
        options({ allowEvaluate: true, defaultStepTimeoutMs: 400 }),
      );
      expect(byDefault.message).toBe('step 1 (evaluate): evaluate timed out after 400 ms');
    });
  });

  it('an evaluate stuck in a loop times out, and its script is stopped: the page is usable for what comes next', async () => {
    await withPage(async ({ page }) => {
      const started = Date.now();
      const err = await failing(page, [
        { action: 'goto', url: simple() },
        { action: 'evaluate', expression: 'while (true) {}', timeoutMs: 300 },
      ]);
      expect(err.message).toBe(
        'step 2 (evaluate): evaluate timed out after 300 ms: the page was still running JavaScript, which was stopped',
      );
      expect(Date.now() - started).toBeLessThan(3000);
      await usable(page);
    });
  });

  it('a press without a selector times out on a page stuck in its key handler, which is stopped', async () => {
    await withPage(async ({ page }) => {
      const err = await failing(page, [
        { action: 'goto', url: simple() },
        {
          action: 'evaluate',
          expression: "document.addEventListener('keydown', () => { while (true) {} }, { once: true })",
        },
        { action: 'press', key: 'a', timeoutMs: 300 },
      ]);
      expect(err.message).toBe(
        'step 3 (press): press timed out after 300 ms: the page was still running JavaScript, which was stopped',
      );
      await usable(page);
      // A press that is not stuck is not held up.
      await runFlow(page, flow([{ action: 'press', key: 'Tab', timeoutMs: 300 }]), options());
    });
  });

  it('a page stuck past the session timeout: the session ends at its own timeout and its context closes', async () => {
    const leases: BrowserLease[] = [];
    const pool = {
      acquire: async (...args: Parameters<BrowserPool['acquire']>) => {
        const lease = await fixture.pool.acquire(...args);
        leases.push(lease);
        return lease;
      },
    } as unknown as BrowserPool;
    const controller = new AbortController();
    const now = new Date().toISOString();
    const artifacts: string[] = [];
    const started = Date.now();
    const outcome = await executeSession({
      session: {
        id: uuidv7(),
        type: 'flow',
        input: {
          steps: [
            { action: 'goto', url: simple() },
            // The step's own timeout (10 minutes) is past the session's: the session timeout ends it.
            { action: 'evaluate', expression: 'while (true) {}', timeoutMs: 600_000 },
          ],
        },
        priority: 0,
        attempt: 1,
        maxAttempts: 1,
        timeoutMs: 1500,
        leaseToken: uuidv7(),
        leaseExpiresAt: now,
        createdAt: now,
        artifactOptions: { screenshot: 'on-failure', trace: 'off' },
      },
      type: flowSessionType(),
      pool,
      signal: controller.signal,
      abort: (reason) => controller.abort(reason),
      upload: async (name) => {
        artifacts.push(name);
      },
      flow: { allowEvaluate: true },
    });
    expect(outcome).toMatchObject({ status: 'failed', errorMessage: 'timed out after 1500 ms' });
    // The stuck script was stopped when the session was aborted: the failure screenshot did not wait.
    expect(artifacts).toContain('failure.png');
    expect(Date.now() - started).toBeLessThan(5000);
    const [lease] = leases;
    if (!lease) throw new Error('no context was leased');
    await waitFor(() => lease.page.isClosed(), { what: 'the context closed', timeoutMs: 5000 });
    // The browser serves the next session.
    await withPage(async ({ page }) => {
      await runFlow(page, flow([{ action: 'goto', url: simple() }]), options());
      await usable(page);
    });
  });
});

describe('placeholders', () => {
  it('fills {{input.x}} from input.input first, then top-level input, objects as JSON', () => {
    const input = { steps: [], a: 'top', input: { a: 'inner', n: 3, o: { k: [1] } }, b: 'only-top' };
    expect(fillPlaceholders('{{input.a}}-{{ input.b }}-{{input.n}}', input)).toBe('inner-only-top-3');
    expect(fillPlaceholders('{{input.o}}', input)).toBe('{"k":[1]}');
    expect(() => fillPlaceholders('{{input.missing}}', input)).toThrow(
      'placeholder {{input.missing}} has no value: set input.missing when enqueuing',
    );
    expect(fillPlaceholders('no placeholders {{other}}', input)).toBe('no placeholders {{other}}');
  });
});

describe('page text and names', () => {
  const R = '\uFFFD';

  it('keeps extracted text Postgres cannot store, with NUL and half emojis replaced and said so', async () => {
    const result = await withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: `${fixture.site.url}/pages/unstorable.html` },
          { action: 'extract', selector: '#title', as: 'title' },
          { action: 'extract', selector: '#nul', as: 'nul' },
          { action: 'extract', selector: '#cut', as: 'cut' },
          { action: 'extract', selector: '#link', as: 'note', attribute: 'data-note' },
          { action: 'extract', selector: '#tags li', as: 'tags', all: true },
          { action: 'extract', selector: '#price', as: 'price' },
        ]),
        options(),
      ),
    );
    expect(result.extracted).toEqual({
      title: 'Product',
      nul: `before${R}after`,
      cut: `Great shoes ${R}`,
      note: `x${R}y${R}z`,
      tags: ['ok 😀', `low ${R} alone`, 'plain'],
      price: '89.00 €',
    });
    expect(result.warnings).toEqual([
      'extracted.nul: 1 character replaced with U+FFFD (NUL or half of a UTF-16 pair, which cannot be stored)',
      'extracted.cut: 1 character replaced with U+FFFD (NUL or half of a UTF-16 pair, which cannot be stored)',
      'extracted.note: 2 characters replaced with U+FFFD (NUL or half of a UTF-16 pair, which cannot be stored)',
      'extracted.tags: 1 character replaced with U+FFFD (NUL or half of a UTF-16 pair, which cannot be stored)',
    ]);
    expect(result.steps.map((s) => s.warning?.split(' ')[0] ?? null)).toEqual([
      null,
      null,
      '1',
      '1',
      '2',
      '1',
      null,
    ]);
  });

  it('refuses a reserved name given through a placeholder, and keeps every other name a plain value', async () => {
    const err = (await withPage(({ page }) =>
      runFlow(
        page,
        flow(
          [
            { action: 'goto', url: `${fixture.site.url}/pages/simple.html` },
            { action: 'extract', selector: 'h1', as: 'heading' },
            { action: 'extract', selector: '#text', as: '{{input.name}}' },
          ],
          { name: '__proto__' },
        ),
        options(),
      ).catch((e: unknown) => e),
    )) as FlowStepError;
    expect(err).toBeInstanceOf(FlowStepError);
    expect(err.message).toBe(
      'step 3 (extract): "__proto__" is reserved (__proto__, constructor and prototype cannot name a value): choose another name',
    );
    expect(err.result.extracted).toEqual({ heading: 'Hello' });
    expect(Object.getPrototypeOf(err.result.extracted)).toBe(Object.prototype);
  });

  it('inserts a selector placeholder as text: an injected >> step or engine never takes effect', async () => {
    const breakout = `x"], iframe >> internal:control=enter-frame >> [data-name="y`;
    const result = await withPage(({ page }) =>
      runFlow(
        page,
        flow(
          [
            { action: 'goto', url: `${fixture.site.url}/pages/frames.html` },
            // Without escaping this selects the iframe's paragraph ("inside the frame").
            { action: 'assert', selector: '[data-name="{{input.breakout}}"]', count: 0 },
            { action: 'extract', selector: 'text="{{input.said}}"', as: 'said' },
            { action: 'extract', selector: "[data-name='{{input.its}}']", as: 'its' },
            { action: 'assert', selector: '.said:has-text("{{input.said}}")', count: 1 },
          ],
          { input: { breakout, said: 'He said "hi" \\ ok', its: "it's" } },
        ),
        options(),
      ),
    );
    expect(result.extracted).toEqual({ said: 'He said "hi" \\ ok', its: "it's" });

    // Outside quotes the value may not add a step: the flow fails before the selector is used.
    const err = (await withPage(({ page }) =>
      runFlow(
        page,
        flow(
          [
            { action: 'goto', url: `${fixture.site.url}/pages/frames.html` },
            { action: 'extract', selector: '#{{input.id}}', as: 'inner' },
          ],
          { id: 'frame >> internal:control=enter-frame >> #inner' },
        ),
        options(),
      ).catch((e: unknown) => e),
    )) as FlowStepError;
    expect(err).toBeInstanceOf(FlowStepError);
    expect(err.message).toMatch(
      /^step 2 \(extract\): the value of \{\{input\.id\}\} \("frame >> internal:control=enter-frame >> #inner"\) would change the selector's steps or engine/,
    );
    expect(err.result.extracted).toEqual({});
  });
});

describe('repeat, if and break', () => {
  const paged = (query = '') => `${fixture.site.url}/pages/paged.html${query}`;

  it('scrapes every item across pages: repeat until "next" is disabled, extract with append', async () => {
    const scrape: FlowStep[] = [
      { action: 'waitFor', selector: 'li.item' },
      { action: 'extract', selector: 'li.item', all: true, append: true, as: 'items' },
      { action: 'extract', selector: '#page-label', append: true, as: 'pages' },
    ];
    const result = await withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: paged('?delay=150') },
          ...scrape,
          {
            action: 'repeat',
            max: 10,
            until: { selector: '#next', state: 'disabled' },
            steps: [
              {
                action: 'if',
                when: { selector: '#next', state: 'enabled' },
                then: [{ action: 'click', selector: '#next' }],
              },
              ...scrape,
            ],
          },
        ]),
        options(),
      ),
    );
    expect(result.extracted).toEqual({
      items: ['Apple', 'Banana', 'Cherry', 'Date', 'Elderberry', 'Fig', 'Grape', 'Honeydew', 'Kiwi'],
      pages: ['Page 1 of 3', 'Page 2 of 3', 'Page 3 of 3'],
    });
    const repeat = result.steps[4];
    expect(result.steps).toHaveLength(5);
    expect(repeat?.action).toBe('repeat');
    expect(repeat?.passes).toHaveLength(2);
    expect(repeat?.passes?.map((p) => p.map((s) => s.action))).toEqual([
      ['if', 'waitFor', 'extract', 'extract'],
      ['if', 'waitFor', 'extract', 'extract'],
    ]);
    expect(repeat?.passes?.map((p) => p[0]?.branch)).toEqual(['then', 'then']);
    expect(repeat?.passes?.[0]?.[0]?.steps?.map((s) => [s.action, s.ok])).toEqual([['click', true]]);
  });

  it('takes the then or the else branch of an if, with placeholders inside', async () => {
    const steps = (query: string): FlowStep[] => [
      { action: 'goto', url: paged(query) },
      {
        action: 'if',
        when: { selector: '{{input.button}}', state: 'enabled' },
        then: [{ action: 'extract', selector: '#{{input.label}}', as: 'more' }],
        else: [{ action: 'extract', selector: '#{{input.label}}', as: 'last' }],
      },
    ];
    const input = { button: '#next', label: 'page-label' };
    await withPage(async ({ page }) => {
      const first = await runFlow(page, flow(steps(''), input), options());
      expect(first.extracted).toEqual({ more: 'Page 1 of 3' });
      expect(first.steps[1]).toMatchObject({ action: 'if', ok: true, branch: 'then' });
      expect(first.steps[1]?.steps?.map((s) => s.action)).toEqual(['extract']);
      const last = await runFlow(page, flow(steps('?page=3'), input), options());
      expect(last.extracted).toEqual({ last: 'Page 3 of 3' });
      expect(last.steps[1]).toMatchObject({ action: 'if', ok: true, branch: 'else' });
    });
  });

  it('leaves the innermost repeat at a break, and stops at max passes without until', async () => {
    const result = await withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: paged() },
          {
            action: 'repeat',
            max: 5,
            steps: [
              { action: 'extract', selector: '#page-label', append: true, as: 'seen' },
              {
                action: 'if',
                when: { text: 'Page 2 of 3', selector: '#page-label' },
                then: [{ action: 'break' }, { action: 'extract', selector: 'h1', as: 'never' }],
              },
              { action: 'click', selector: '#next' },
              { action: 'waitFor', selector: 'li.item' },
            ],
          },
          {
            action: 'repeat',
            max: 3,
            steps: [
              { action: 'extract', selector: 'li.item', append: true, as: 'firsts' },
              { action: 'repeat', max: 4, steps: [{ action: 'break' }] },
            ],
          },
        ]),
        options(),
      ),
    );
    expect(result.extracted).toEqual({
      seen: ['Page 1 of 3', 'Page 2 of 3'],
      firsts: ['Date', 'Date', 'Date'],
    });
    expect(result.steps[1]?.passes).toHaveLength(2);
    expect(result.steps[1]?.passes?.[1]?.map((s) => s.action)).toEqual(['extract', 'if']);
    expect(result.steps[1]?.passes?.[1]?.[1]?.steps?.map((s) => s.action)).toEqual(['break']);
    // The inner break leaves only the inner repeat: the outer one runs its 3 passes.
    expect(result.steps[2]?.passes).toHaveLength(3);
    expect(result.steps[2]?.passes?.[0]?.[1]?.passes).toEqual([[{ action: 'break', ok: true, ms: 0 }]]);
  });

  it('checks conditions at once, without waiting; waitFor waits for a url or a text', async () => {
    const result = await withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: paged('?delay=1500') },
          { action: 'click', selector: '#next' },
          // The next page shows 1.5 s after the click: a condition checked now sees the empty list.
          {
            action: 'if',
            when: { selector: 'li.item', state: 'attached' },
            then: [{ action: 'extract', selector: 'li.item', as: 'waited' }],
            else: [{ action: 'extract', selector: '#page-label', as: 'before' }],
          },
          {
            action: 'if',
            when: { url: '**/paged.html?page=2*' },
            then: [{ action: 'extract', selector: '#page-label', as: 'waitedUrl' }],
          },
          { action: 'waitFor', url: '**/pages/paged.html?page=2*' },
          { action: 'waitFor', text: 'Elderberry', selector: '#items' },
          {
            action: 'if',
            when: { text: 'Page 2 of 3' },
            then: [{ action: 'extract', selector: '#page-label', as: 'after' }],
          },
          {
            action: 'if',
            when: { selector: '#items li:nth-child(3)', state: 'visible' },
            then: [{ action: 'extract', selector: '#items li:nth-child(3)', as: 'third' }],
          },
        ]),
        options(),
      ),
    );
    expect(result.extracted).toEqual({ before: 'Page 1 of 3', after: 'Page 2 of 3', third: 'Fig' });
    expect(result.steps[2]?.branch).toBe('else');
    expect(result.steps[2]?.ms).toBeLessThan(1500);
    expect(result.steps[3]?.branch).toBe('else');
    expect(result.steps[3]?.ms).toBeLessThan(1500);
  });

  it('fails a waitFor url or text that does not come at its timeout', async () => {
    await withPage(async ({ page }) => {
      const url = (await runFlow(
        page,
        flow([
          { action: 'goto', url: paged() },
          { action: 'waitFor', url: '**/elsewhere.html', timeoutMs: 300 },
        ]),
        options(),
      ).catch((e: unknown) => e)) as FlowStepError;
      expect(url.message).toMatch(
        /^step 2 \(waitFor\): expected the URL to match "\*\*\/elsewhere\.html".*after 300 ms/,
      );
      const text = (await runFlow(
        page,
        flow([
          { action: 'goto', url: paged() },
          { action: 'waitFor', text: 'Kiwi', timeoutMs: 300 },
        ]),
        options(),
      ).catch((e: unknown) => e)) as FlowStepError;
      expect(text.message).toMatch(/^step 2 \(waitFor\): expected "body" to contain text "Kiwi"/);
    });
  });

  it('stops a flow that runs more than 10,000 steps, with the partial nested result', async () => {
    const inner: FlowStep = { action: 'repeat', max: 1000, steps: [{ action: 'break' }] };
    const err = (await withPage(({ page }) =>
      runFlow(
        page,
        flow([{ action: 'repeat', max: 1000, steps: [{ action: 'repeat', max: 1000, steps: [inner] }] }]),
        options(),
      ).catch((e: unknown) => e),
    )) as FlowStepError;
    expect(err).toBeInstanceOf(FlowStepError);
    expect(err.index).toBe(0);
    expect(err.message).toMatch(/^step 1 \(repeat\): the flow ran more than 10000 steps/);
    expect(err.result.steps[0]).toMatchObject({ action: 'repeat', ok: false });
    expect(err.result.steps[0]?.passes?.length).toBe(5);
  });

  it('fails the step inside a repeat naming its path and pass, with the passes so far', async () => {
    const err = (await withPage(({ page }) =>
      runFlow(
        page,
        flow([
          { action: 'goto', url: paged() },
          {
            action: 'repeat',
            max: 5,
            steps: [
              { action: 'extract', selector: '#page-label', append: true, as: 'seen' },
              { action: 'click', selector: '#next', timeoutMs: 2000 },
              { action: 'waitFor', selector: 'li.item' },
            ],
          },
        ]),
        options(),
      ).catch((e: unknown) => e),
    )) as FlowStepError;
    expect(err).toBeInstanceOf(FlowStepError);
    expect(err.index).toBe(1);
    expect(err.action).toBe('click');
    expect(err.path).toBe('input.steps.1.steps.1');
    expect(err.passes).toEqual([{ path: 'input.steps.1', pass: 3 }]);
    expect(err.message).toMatch(
      /^step input\.steps\.1\.steps\.1 \(click\) failed in pass 3: .*Timeout 2000ms exceeded/,
    );
    expect(err.result.extracted).toEqual({ seen: ['Page 1 of 3', 'Page 2 of 3', 'Page 3 of 3'] });
    expect(err.result.steps[1]?.passes).toHaveLength(3);
    expect(err.result.steps[1]?.passes?.[2]?.map((s) => [s.action, s.ok])).toEqual([
      ['extract', true],
      ['click', false],
    ]);
  });
});

describe('a failing nested step is named by its path', () => {
  const fail = (steps: FlowStep[], over: Partial<FlowOptions> = {}) =>
    withPage(({ page }) =>
      runFlow(page, flow(steps), options(over)).catch((e: unknown) => e),
    ) as Promise<FlowStepError>;
  const missing = { action: 'click', selector: '#missing', timeoutMs: 200 } as const;

  it('in an if branch, in repeats within repeats (each pass named), and a condition that fails', async () => {
    const simple = `${fixture.site.url}/pages/simple.html`;
    const inIf = await fail([
      { action: 'goto', url: simple },
      { action: 'if', when: { url: '**/simple.html' }, then: [{ action: 'waitFor', ms: 1 }, missing] },
    ]);
    expect(inIf).toBeInstanceOf(FlowStepError);
    expect(inIf.message).toMatch(/^step input\.steps\.1\.then\.1 \(click\) failed: .*Timeout 200ms exceeded/);
    expect([inIf.index, inIf.action, inIf.passes]).toEqual([1, 'click', []]);

    // The 6th evaluate throws: the outer repeat's 2nd pass, the inner one's 3rd.
    const nested = await fail(
      [
        { action: 'goto', url: simple },
        {
          action: 'repeat',
          max: 3,
          steps: [
            { action: 'waitFor', ms: 1 },
            {
              action: 'repeat',
              max: 3,
              steps: [
                { action: 'assert', selector: 'body', count: 1 },
                {
                  action: 'evaluate',
                  expression: "if ((window.n = (window.n ?? 0) + 1) === 6) throw new Error('sixth'); 1",
                },
              ],
            },
          ],
        },
      ],
      { allowEvaluate: true },
    );
    expect(nested.message).toMatch(
      /^step input\.steps\.1\.steps\.1\.steps\.1 \(evaluate\) failed in pass 3 of input\.steps\.1\.steps\.1, pass 2 of input\.steps\.1: .*sixth/,
    );
    expect(nested.passes).toEqual([
      { path: 'input.steps.1', pass: 2 },
      { path: 'input.steps.1.steps.1', pass: 3 },
    ]);
    expect(nested.result.steps[1]).toMatchObject({ action: 'repeat', ok: false });
    expect(nested.result.steps[1]?.passes).toHaveLength(2);

    // A condition that cannot be checked fails its own step, named by the step's path.
    const cond = await fail([
      { action: 'goto', url: simple },
      {
        action: 'repeat',
        max: 2,
        steps: [
          { action: 'waitFor', ms: 1 },
          { action: 'if', when: { selector: 'xpath=//p[', state: 'attached' }, then: [] },
        ],
      },
    ]);
    expect(cond.message).toMatch(/^step input\.steps\.1\.steps\.1 \(if\) failed in pass 1: /);
    expect(cond.action).toBe('if');
  });

  it('in a later pass: the pass it failed in, across real pages', async () => {
    const err = await fail([
      { action: 'goto', url: `${fixture.site.url}/pages/paged.html` },
      {
        action: 'repeat',
        max: 5,
        steps: [
          { action: 'waitFor', selector: 'li.item' },
          {
            action: 'if',
            when: { text: 'Page 3 of 3' },
            then: [{ action: 'assert', selector: '#next', visible: false, timeoutMs: 200 }],
          },
          { action: 'click', selector: '#next' },
        ],
      },
    ]);
    expect(err.message).toMatch(
      /^step input\.steps\.1\.steps\.1\.then\.0 \(assert\) failed in pass 3: expected "#next" to be hidden, it is visible \(after 200 ms\)$/,
    );
    expect(err.index).toBe(1);
    expect(err.result.steps[1]?.passes).toHaveLength(3);
  });
});

describe('repeat, if and break at enqueue', () => {
  const goto = { action: 'goto', url: 'https://example.com/' };
  const nest = (depth: number): unknown =>
    depth === 0 ? goto : { action: 'if', when: { url: '**' }, then: [nest(depth - 1)] };

  it('accepts nested steps, append in a repeat and two appending steps sharing a name', () => {
    expect(
      checkFlowInput({
        steps: [
          goto,
          {
            action: 'repeat',
            max: 3,
            until: { selector: '#next', state: 'disabled' },
            steps: [
              { action: 'extract', selector: 'li', all: true, append: true, as: 'items' },
              { action: 'if', when: { text: 'x' }, then: [{ action: 'break' }], else: [] },
            ],
          },
          { action: 'extract', selector: 'h1', append: true, as: 'items' },
          { action: 'waitFor', url: '**/done' },
          { action: 'waitFor', text: 'Done', selector: '#status' },
        ],
      }),
    ).toBeNull();
    expect(checkFlowInput({ steps: [nest(8)] })).toBeNull();
  });

  it('refuses a reused as without append, with the path of the second step', () => {
    expect(
      checkFlowInput({
        steps: [
          goto,
          { action: 'extract', selector: 'h1', as: 'title' },
          { action: 'repeat', max: 2, steps: [{ action: 'extract', selector: 'h2', as: 'title' }] },
        ],
      }),
    ).toMatchObject({ path: 'input.steps.2.steps.0.as' });
    expect(
      checkFlowInput({
        steps: [
          goto,
          { action: 'extract', selector: 'h1', as: 'title' },
          { action: 'extract', selector: 'h2', as: 'title' },
        ],
      })?.message,
    ).toContain('"title" is already the name of input.steps.1');
    expect(
      checkFlowInput({
        steps: [
          { action: 'extract', selector: 'h1', as: 'x', append: true },
          { action: 'evaluate', expression: '1', as: 'x' },
        ],
      })?.path,
    ).toBe('input.steps.1.as');
  });

  it('refuses a break outside a repeat, nesting deeper than 8, and bad nested steps, with their paths', () => {
    expect(checkFlowInput({ steps: [goto, { action: 'break' }] })).toEqual({
      path: 'input.steps.1',
      message: 'break is only allowed inside a repeat',
    });
    expect(
      checkFlowInput({ steps: [{ action: 'if', when: { url: '**' }, then: [{ action: 'break' }] }] })?.path,
    ).toBe('input.steps.0.then.0');
    expect(checkFlowInput({ steps: [nest(9)] })).toEqual({
      path: `input.steps.0${'.then.0'.repeat(8)}`,
      message: 'repeat and if may be nested 8 deep at most',
    });
    expect(checkFlowInput({ steps: [{ action: 'repeat', steps: [goto] }] })).toEqual({
      path: 'input.steps.0.max',
      message: 'is required',
    });
    expect(checkFlowInput({ steps: [{ action: 'repeat', max: 1001, steps: [goto] }] })?.path).toBe(
      'input.steps.0.max',
    );
    expect(checkFlowInput({ steps: [{ action: 'repeat', max: 0, steps: [goto] }] })?.path).toBe(
      'input.steps.0.max',
    );
    expect(
      checkFlowInput({ steps: [{ action: 'repeat', max: 2, steps: [goto, { action: 'click' }] }] }),
    ).toEqual({ path: 'input.steps.0.steps.1.selector', message: 'is required' });
    expect(
      checkFlowInput({ steps: [{ action: 'if', when: { selector: '#a', state: 'open' }, then: [] }] })?.path,
    ).toMatch(/^input\.steps\.0\.when/);
    expect(checkFlowInput({ steps: [{ action: 'waitFor', url: '**', text: 'x' }] })).toEqual({
      path: 'input.steps.0',
      message: 'waitFor needs exactly one of selector, ms, url or text',
    });
  });

  it('checks selector placeholders in nested steps and conditions', () => {
    const input = { id: 'a >> css=b' };
    expect(
      checkFlowInput({
        ...input,
        steps: [
          { action: 'if', when: { url: '**' }, then: [{ action: 'click', selector: '#{{input.id}}' }] },
        ],
      })?.path,
    ).toBe('input.steps.0.then.0.selector');
    expect(
      checkFlowInput({
        ...input,
        steps: [
          { action: 'repeat', max: 2, until: { selector: '#{{input.id}}', state: 'visible' }, steps: [goto] },
        ],
      })?.path,
    ).toBe('input.steps.0.until.selector');
  });
});
