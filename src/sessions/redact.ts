/**
 * Secrets of a session's input kept out of what leaves the executor (error messages, step results, the
 * session's log lines). A secret is the value of any input field whose name starts with `secret`
 * (`secret`, `secrets`, `secretToken`, at any depth; for an object or array, every string and number in
 * it). Each is replaced by `[redacted]` wherever it appears, as it is or in the forms a URL or JSON text
 * gives it (percent-encoded, form-encoded, JSON-escaped).
 */

export const REDACTED = '[redacted]';
const SECRET_KEY = /^secret/i;

/** Replaces the session's secrets in a text; `active` is false when the input has none. */
export type Redact = ((text: string) => string) & { readonly active: boolean };

/** The secret values of an input: strings and numbers under `secret*` keys. */
export function secretValues(input: unknown): string[] {
  const out = new Set<string>();
  const collect = (v: unknown, secret: boolean, depth: number): void => {
    if (depth > 64) return;
    if (typeof v === 'string') {
      if (secret && v.length > 0) out.add(v);
      return;
    }
    if (typeof v === 'number' || typeof v === 'bigint') {
      if (secret) out.add(String(v));
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    if (Array.isArray(v)) {
      for (const item of v) collect(item, secret, depth + 1);
      return;
    }
    for (const [k, item] of Object.entries(v as Record<string, unknown>))
      collect(item, secret || SECRET_KEY.test(k), depth + 1);
  };
  collect(input, false, 0);
  return [...out];
}

function tryEncode(encode: (s: string) => string, s: string): string | undefined {
  try {
    return encode(s);
  } catch {
    return undefined; // a lone surrogate cannot be percent-encoded
  }
}

/** The forms a secret takes in URLs and JSON text. */
function formsOf(secret: string): string[] {
  const forms = new Set<string>([secret]);
  const add = (f: string | undefined) => {
    if (f === undefined || f.length === 0) return;
    forms.add(f);
    forms.add(f.replace(/%[0-9A-F]{2}/g, (h) => h.toLowerCase()));
  };
  add(tryEncode(encodeURIComponent, secret));
  add(tryEncode(encodeURI, secret));
  add(tryEncode((s) => new URLSearchParams({ s }).toString().slice(2), secret));
  add(tryEncode((s) => new URL(`http://h/?${s}`).search.slice(1), secret));
  add(tryEncode((s) => new URL(`http://h/${s}`).pathname.slice(1), secret));
  add(JSON.stringify(secret).slice(1, -1));
  return [...forms];
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A redactor for the secrets of `input`; the identity when it has none. */
export function createRedactor(input: unknown): Redact {
  const secrets = secretValues(input);
  if (secrets.length === 0) return Object.assign((text: string) => text, { active: false });
  // Longest first, so a secret's encoded form is replaced whole, not after a shorter secret inside it.
  const forms = [...new Set(secrets.flatMap(formsOf))].sort((a, b) => b.length - a.length);
  const re = new RegExp(forms.map(escapeRegExp).join('|'), 'g');
  return Object.assign((text: string) => text.replace(re, REDACTED), { active: true });
}

/** Every string of a JSON value redacted (values only; keys are the session's own names). */
export function redactJson<T>(value: T, redact: Redact): T {
  if (!redact.active) return value;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return redact(v);
    if (typeof v !== 'object' || v === null) return v;
    if (Array.isArray(v)) return v.map(walk);
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, walk(x)]));
  };
  return walk(value) as T;
}
