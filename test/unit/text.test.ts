import { describe, expect, it } from 'vitest';
import {
  findUnstorable,
  storableCompletion,
  storableJson,
  storableMessage,
  storableText,
  stripAnsi,
} from '../../src/protocol/text.js';
import { completionBody } from '../../src/runner/reports.js';

const R = '\uFFFD';

describe('storable text', () => {
  it('replaces NUL and unpaired surrogates with U+FFFD and counts them; whole pairs stay', () => {
    expect(storableText('plain 😀 €')).toEqual({ text: 'plain 😀 €', replaced: 0 });
    expect(storableText('a\u0000b')).toEqual({ text: `a${R}b`, replaced: 1 });
    expect(storableText('cut \uD83D')).toEqual({ text: `cut ${R}`, replaced: 1 });
    expect(storableText('\uDE00 low, \uD83D\uDE00 pair, \uD83D\uD83D')).toEqual({
      text: `${R} low, 😀 pair, ${R}${R}`,
      replaced: 3,
    });
  });

  it('makes every string and key of a JSON value storable, copying only what changed', () => {
    const clean = { a: ['x', 1, null, { b: true }] };
    expect(storableJson(clean).value).toBe(clean);
    const dirty = { keep: { deep: 'same' }, list: ['ok', 'n\u0000'], 'k\u0000': '\uD800' };
    const out = storableJson(dirty);
    expect(out.replaced).toBe(3);
    expect(out.value).toEqual({ keep: { deep: 'same' }, list: ['ok', `n${R}`], [`k${R}`]: R });
    expect((out.value as typeof dirty).keep).toBe(dirty.keep);
    expect(dirty.list[1]).toBe('n\u0000');
  });

  it('finds the path of the first value or key Postgres cannot store', () => {
    expect(findUnstorable({ steps: [{ value: 'ok' }] }, 'body.input')).toBeNull();
    expect(findUnstorable({ steps: [{}, { value: 'a\u0000' }] }, 'body.input')).toEqual({
      path: 'body.input.steps.1.value',
      message: 'contains a NUL character (\\u0000), which cannot be stored: remove it',
    });
    expect(findUnstorable({ name: 'emoji \uD83D' }, 'body.input')?.message).toMatch(
      /unpaired UTF-16 surrogate/,
    );
    expect(findUnstorable({ 'bad\u0000key': 1 }, 'body.input')?.path).toBe(`body.input.bad${R}key`);
    expect(findUnstorable(undefined, 'body.input')).toBeNull();
  });
});

describe('error messages', () => {
  // As Playwright words a timeout: its call log is dimmed with ANSI codes.
  const playwright =
    "locator.click: Timeout 300ms exceeded.\nCall log:\n\u001b[2m  - waiting for locator('#nope').first()\u001b[22m\n";

  it('lose terminal escape sequences', () => {
    expect(stripAnsi(playwright)).toBe(
      "locator.click: Timeout 300ms exceeded.\nCall log:\n  - waiting for locator('#nope').first()\n",
    );
    expect(stripAnsi('\u001b[31mred\u001b[39m \u001b]8;;http://x\u0007link\u001b]8;;\u0007')).toBe(
      'red link',
    );
    expect(stripAnsi('no codes')).toBe('no codes');
  });

  it('are cut within bounds without leaving half of a character', () => {
    const message = `${'a'.repeat(9)}😀tail`;
    expect(storableMessage(message, 10)).toEqual({ text: `${'a'.repeat(9)}${R}`, replaced: 1 });
    expect(storableMessage(`\u001b[2m${'b'.repeat(20)}\u001b[22m`, 10).text).toBe('b'.repeat(10));
  });

  it('a completion is storable on both sides: the runner sends and the API stores the same rule', () => {
    const { body, replaced } = completionBody('lease', {
      status: 'failed',
      result: { extracted: { t: 'x\u0000' }, steps: [] },
      errorMessage: `step 1 (click): ${playwright}\u0000`,
    });
    expect(replaced).toBe(2);
    expect(body).toEqual({
      leaseToken: 'lease',
      status: 'failed',
      result: { extracted: { t: `x${R}` }, steps: [] },
      errorMessage: `step 1 (click): ${stripAnsi(playwright)}${R}`,
    });
    expect(storableCompletion(body)).toEqual({ completion: body, replaced: 0 });
  });
});
