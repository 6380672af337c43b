import { describe, expect, it } from 'vitest';
import { createRedactor, redactJson, secretValues } from '../../src/sessions/redact.js';

describe('secret redaction', () => {
  it('takes the values of every secret* field, at any depth', () => {
    expect(
      secretValues({
        user: 'ada',
        secret: 's1',
        secrets: { password: 'p2', pins: [1234] },
        input: { secretToken: 't3', SecretKey: 'k4', other: 'visible' },
        steps: [{ action: 'goto', url: 'http://x' }],
        secretFlag: true,
      }).sort(),
    ).toEqual(['1234', 'k4', 'p2', 's1', 't3']);
    expect(createRedactor({ user: 'ada' })('ada')).toBe('ada');
  });

  it('replaces a secret as it is, percent-encoded, form-encoded and JSON-escaped', () => {
    const secret = 'hunter 2/ü&"q"';
    const redact = createRedactor({ input: { secretToken: secret } });
    const forms = [
      secret,
      encodeURIComponent(secret),
      encodeURIComponent(secret).toLowerCase(),
      encodeURI(secret),
      new URLSearchParams({ t: secret }).toString().slice(2),
      new URL(`http://h/?t=${secret}`).search.slice(3),
      JSON.stringify(secret).slice(1, -1),
    ];
    for (const form of forms) {
      expect(redact(`before ${form} after`), form).toBe('before [redacted] after');
    }
  });

  it('redacts the strings of a JSON value, not its keys', () => {
    const redact = createRedactor({ secret: 'abc' });
    expect(redactJson({ abc: ['xabcx', { e: 'abc' }], n: 1 }, redact)).toEqual({
      abc: ['x[redacted]x', { e: '[redacted]' }],
      n: 1,
    });
  });
});
