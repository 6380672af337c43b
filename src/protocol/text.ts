/**
 * Text as Postgres stores it. A jsonb value (a session's input and result) and a text column (an error
 * message) cannot hold U+0000, and jsonb refuses an unpaired UTF-16 surrogate (half of an emoji cut in
 * two). Pages contain both; these helpers replace them with U+FFFD and count what they replaced, so a
 * result keeps everything else. Error messages also lose terminal colour codes (Playwright adds them).
 */

/** A quick test: strings without these characters are stored as they are. */
const MAYBE_UNSTORABLE = /[\u0000\uD800-\uDFFF]/;
/** NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one. */
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export const REPLACEMENT_CHARACTER = '\uFFFD';

/** `text` with what Postgres cannot store replaced by U+FFFD, and how many characters were replaced. */
export function storableText(text: string): { text: string; replaced: number } {
  if (!MAYBE_UNSTORABLE.test(text)) return { text, replaced: 0 };
  let replaced = 0;
  const out = text.replace(UNSTORABLE, () => {
    replaced++;
    return REPLACEMENT_CHARACTER;
  });
  return { text: out, replaced };
}

/**
 * A JSON value with every string (and object key) made storable. The value is returned as it is when
 * nothing needed replacing; otherwise changed containers are copied, never modified in place.
 */
export function storableJson(value: unknown): { value: unknown; replaced: number } {
  let replaced = 0;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const s = storableText(v);
      replaced += s.replaced;
      return s.text;
    }
    if (typeof v !== 'object' || v === null) return v;
    if (Array.isArray(v)) {
      let copy: unknown[] | undefined;
      for (let i = 0; i < v.length; i++) {
        const item: unknown = v[i];
        const next = walk(item);
        if (next !== item) (copy ??= v.slice())[i] = next;
      }
      return copy ?? v;
    }
    let copy: Record<string, unknown> | undefined;
    const entries = Object.entries(v as Record<string, unknown>);
    for (const [k, item] of entries) {
      const key = storableText(k);
      const next = walk(item);
      if (key.replaced > 0 || next !== item) {
        replaced += key.replaced;
        copy ??= Object.fromEntries(entries);
        if (key.replaced > 0) delete copy[k];
        copy[key.text] = next;
      }
    }
    return copy ?? v;
  };
  const out = walk(value);
  return { value: out, replaced };
}

/** What is wrong with a string Postgres cannot store, or null. */
export function unstorableReason(text: string): string | null {
  if (!MAYBE_UNSTORABLE.test(text)) return null;
  if (text.includes('\u0000')) return 'contains a NUL character (\\u0000), which cannot be stored: remove it';
  if (LONE_SURROGATE.test(text)) {
    return 'contains an unpaired UTF-16 surrogate (half of a character such as an emoji), which cannot be stored: send whole characters';
  }
  return null;
}

/**
 * The first string or key in a JSON value that Postgres cannot store: its dotted path under `at` (a key's
 * own path for a bad key) and why, or null.
 */
export function findUnstorable(value: unknown, at: string): { path: string; message: string } | null {
  if (typeof value === 'string') {
    const message = unstorableReason(value);
    return message === null ? null : { path: at, message };
  }
  if (typeof value !== 'object' || value === null) return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUnstorable(value[i], `${at}.${i}`);
      if (found) return found;
    }
    return null;
  }
  for (const [k, item] of Object.entries(value as Record<string, unknown>)) {
    const keyMessage = unstorableReason(k);
    if (keyMessage !== null) return { path: `${at}.${storableText(k).text}`, message: `key ${keyMessage}` };
    const found = findUnstorable(item, `${at}.${k}`);
    if (found) return found;
  }
  return null;
}

// ANSI escape sequences: CSI (colours, cursor moves) and OSC (titles, links), as terminals read them.
const ANSI =
  /[\u001B\u009B][[\]()#;?]*(?:(?:(?:(?:;[-a-zA-Z\d/#&.:=?%@~_]+)*|[a-zA-Z\d]+(?:;[-a-zA-Z\d/#&.:=?%@~_]*)*)?\u0007)|(?:(?:\d{1,4}(?:;\d{0,4})*)?[\dA-PR-TZcf-nq-uy=><~]))/g;

/** `text` without terminal escape sequences (Playwright colours its call logs). */
export function stripAnsi(text: string): string {
  return text.includes('\u001B') || text.includes('\u009B') ? text.replace(ANSI, '') : text;
}

/** The longest error message a completion carries (CompleteBody's bound). */
export const ERROR_MESSAGE_MAX = 65536;

/** An error message as it is stored and sent: no colour codes, storable, at most `max` characters. */
export function storableMessage(
  message: string,
  max = ERROR_MESSAGE_MAX,
): { text: string; replaced: number } {
  const plain = stripAnsi(message);
  // Cut first: a cut through a surrogate pair leaves half of it, which storableText then replaces.
  return storableText(plain.length > max ? plain.slice(0, max) : plain);
}

/**
 * A session's completion (result and error message) as Postgres stores it, the same rule for the runner
 * that sends it and the API that stores it: `replaced` counts the characters changed.
 */
export function storableCompletion<T extends { result?: unknown; errorMessage?: string }>(
  completion: T,
): { completion: T; replaced: number } {
  const out = { ...completion };
  let replaced = 0;
  if (out.result !== undefined) {
    const stored = storableJson(out.result);
    out.result = stored.value;
    replaced += stored.replaced;
  }
  if (out.errorMessage !== undefined) {
    const stored = storableMessage(out.errorMessage);
    out.errorMessage = stored.text;
    replaced += stored.replaced;
  }
  return { completion: out, replaced };
}
