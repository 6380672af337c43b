import { describe, expect, it } from 'vitest';
import { fillSelector, fillText } from '../../src/protocol/placeholders.js';
import { checkFlowInput } from '../../src/protocol/flow.js';

const ENTER_FRAME = 'x >> internal:control=enter-frame';

function text(template: string, input: Record<string, unknown>): string {
  const out = fillSelector(template, input);
  if (!('text' in out)) throw new Error(JSON.stringify(out));
  return out.text;
}

function refused(template: string, input: Record<string, unknown>): string {
  const out = fillSelector(template, input);
  if (!('refused' in out)) throw new Error(`not refused: ${JSON.stringify(out)}`);
  return out.refused;
}

describe('placeholders in selectors', () => {
  it('inserts plain values as they are, in and out of quotes', () => {
    expect(text('#{{input.id}} .row', { id: 'main' })).toBe('#main .row');
    expect(text('text="{{input.q}}"', { input: { q: 'Sign in' } })).toBe('text="Sign in"');
    expect(text('li:nth-child({{input.n}})', { n: 3 })).toBe('li:nth-child(3)');
    expect(text('{{input.sel}}', { sel: '.btn.primary' })).toBe('.btn.primary');
  });

  it('escapes quotes and backslashes inside a quoted string, for that string', () => {
    expect(text('text="{{input.q}}"', { q: 'He said "hi" \\ ok' })).toBe('text="He said \\"hi\\" \\\\ ok"');
    expect(text("[data-name='{{input.q}}']", { q: "it's" })).toBe("[data-name='it\\'s']");
    // A quote of the other kind is plain text in the string.
    expect(text('[data-name="{{input.q}}"]', { q: "it's" })).toBe('[data-name="it\'s"]');
    // CSS strings cannot hold a raw line break: it is escaped by code point.
    expect(text('[title="{{input.q}}"]', { q: 'a\nb' })).toBe('[title="a\\a b"]');
    expect(text('internal:text="{{input.q}}"s', { q: 'a"b' })).toBe('internal:text="a\\"b"s');
  });

  it('keeps a value that tries to leave its quoted string inside it', () => {
    const name = `x"], iframe >> internal:control=enter-frame >> [data-name="y`;
    expect(text('[data-name="{{input.name}}"]', { name })).toBe(
      '[data-name="x\\"], iframe >> internal:control=enter-frame >> [data-name=\\"y"]',
    );
    expect(text('text="{{input.q}}" >> .price', { q: '" >> xpath=//body >> "' })).toBe(
      'text="\\" >> xpath=//body >> \\"" >> .price',
    );
  });

  it('refuses a value outside quotes that adds a step or changes an engine', () => {
    expect(refused('#{{input.id}}', { id: ENTER_FRAME })).toMatch(
      /the value of \{\{input\.id\}\} \("x >> internal:control=enter-frame"\) would change the selector's steps or engine/,
    );
    expect(refused('{{input.sel}}', { sel: 'xpath=//a' })).toContain('{{input.sel}}');
    expect(refused('{{input.sel}}', { sel: '//a' })).toContain('{{input.sel}}');
    expect(refused('{{input.sel}}', { sel: '"Sign in"' })).toContain('{{input.sel}}');
    expect(refused('{{input.sel}} >> .b', { sel: 'internal:control=enter-frame' })).toContain(
      '{{input.sel}}',
    );
    // A quote opened by the value would hide the template's own `>>`.
    expect(refused('.a{{input.v}} >> .b', { v: '"' })).toContain('{{input.v}}');
    // Inside `text=` with text before it, quotes are plain text, so `>>` still splits: refused.
    expect(refused('text=Buy "{{input.q}}"', { q: ENTER_FRAME })).toContain('{{input.q}}');
  });

  it('checks the selector nested in a JSON-quoted engine body too', () => {
    expect(text('internal:has="{{input.q}}"', { q: '#a' })).toBe('internal:has="#a"');
    // Escaped for the JSON string, but the nested selector would gain a step: refused.
    expect(refused('internal:has="{{input.q}}"', { q: ENTER_FRAME })).toContain('{{input.q}}');
  });

  it('refuses what an XPath string cannot escape', () => {
    expect(text('//p[@data-name="{{input.q}}"]', { q: "it's" })).toBe('//p[@data-name="it\'s"]');
    expect(refused('//p[@data-name="{{input.q}}"]', { q: 'say "hi"' })).toMatch(/XPath string/);
  });

  it('names a placeholder without a value', () => {
    expect(fillSelector('#{{input.gone}}', {})).toEqual({
      missing: 'placeholder {{input.gone}} has no value: set input.gone when enqueuing',
    });
    expect(fillText('{{input.a}}-{{input.b}}', { a: 1, input: { b: { c: 2 } } })).toEqual({
      text: '1-{"c":2}',
    });
  });
});

describe('checkFlowInput', () => {
  const steps = (...s: Record<string, unknown>[]) => [{ action: 'goto', url: 'http://127.0.0.1/' }, ...s];

  it('refuses reserved result names, as given or through a placeholder', () => {
    for (const as of ['__proto__', 'constructor', 'prototype']) {
      expect(checkFlowInput({ steps: steps({ action: 'extract', selector: 'h1', as }) })).toEqual({
        path: 'input.steps.1.as',
        message: `"${as}" is reserved (__proto__, constructor and prototype cannot name a value): choose another name`,
      });
    }
    expect(
      checkFlowInput({
        steps: steps({ action: 'evaluate', expression: '1', as: '{{input.key}}' }),
        key: '__proto__',
      })?.path,
    ).toBe('input.steps.1.as');
    expect(checkFlowInput({ steps: steps({ action: 'extract', selector: 'h1', as: 'proto' }) })).toBeNull();
  });

  it('refuses at enqueue a selector placeholder whose value would change the selector', () => {
    const problem = checkFlowInput({
      steps: steps({ action: 'click', selector: '#{{input.name}}' }),
      input: { name: ENTER_FRAME },
    });
    expect(problem?.path).toBe('input.steps.1.selector');
    expect(problem?.message).toContain('{{input.name}}');
    expect(
      checkFlowInput({
        steps: steps({ action: 'click', selector: 'text="{{input.name}}"' }),
        name: ENTER_FRAME,
      }),
    ).toBeNull();
    // A value not given yet fails the step when it runs, as before.
    expect(checkFlowInput({ steps: steps({ action: 'click', selector: '#{{input.later}}' }) })).toBeNull();
  });
});
