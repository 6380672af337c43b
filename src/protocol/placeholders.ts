/**
 * `{{input.x}}` placeholders in flow steps. A value comes from `input.input.x`, else `input.x`; strings
 * are inserted as they are, other values as JSON.
 *
 * In a selector a value is text, never selector syntax that changes what the selector is:
 * - inside a quoted string of the selector (`text="{{input.q}}"`, `[name='{{input.q}}']`,
 *   `:has-text("{{input.q}}")`) quotes and backslashes in the value are escaped for that string, so it
 *   matches the literal text (an XPath string has no escapes: a value with its quote or a backslash is
 *   refused);
 * - outside quotes (`#{{input.id}}`) the value is inserted as it is, but it may not change the selector's
 *   steps or their engines: a value bringing `>>`, `engine=`, a leading `//` or a quoted text is refused.
 * The server checks this at enqueue (the values are in the input), the runner again before each step.
 */

const PLACEHOLDER = /\{\{\s*input\.([A-Za-z0-9_$][A-Za-z0-9_$.-]*)\s*\}\}/g;

/** Filling a template: the text, the placeholder that has no value, or why a value is refused. */
export type Filled = { text: string } | { missing: string } | { refused: string };

export function hasPlaceholder(text: string): boolean {
  return text.includes('{{') && new RegExp(PLACEHOLDER.source).test(text);
}

function lookup(root: unknown, path: string): unknown {
  let v: unknown = root;
  for (const key of path.split('.')) {
    if (typeof v !== 'object' || v === null || !Object.hasOwn(v, key)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

/** The text a placeholder `{{input.<path>}}` stands for, or undefined when the input has no value. */
export function placeholderText(input: Record<string, unknown>, path: string): string | undefined {
  let v = lookup(input.input, path);
  if (v === undefined) v = lookup(input, path);
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' ? v : JSON.stringify(v);
}

const missingMessage = (path: string) =>
  `placeholder {{input.${path}}} has no value: set input.${path} when enqueuing`;

/** Replaces every placeholder of `template` with its value's text. */
export function fillText(template: string, input: Record<string, unknown>): Filled {
  let missing: string | undefined;
  const text = template.replace(PLACEHOLDER, (whole, path: string) => {
    const v = placeholderText(input, path);
    if (v === undefined) missing ??= path;
    return v ?? whole;
  });
  return missing === undefined ? { text } : { missing: missingMessage(missing) };
}

// ---- selectors --------------------------------------------------------------------------------------

/** Playwright engines whose body is a JSON string holding another selector. */
const NESTED_ENGINES = new Set([
  'internal:has',
  'internal:has-not',
  'internal:and',
  'internal:or',
  'internal:chain',
  'left-of',
  'right-of',
  'above',
  'below',
  'near',
]);

/** The engine of one step of a selector chain, as Playwright names it. */
function engineOf(part: string): { name: string; body: string } {
  const eq = part.indexOf('=');
  if (eq !== -1 && /^[a-zA-Z_0-9-+:*]+$/.test(part.substring(0, eq).trim())) {
    return { name: part.substring(0, eq).trim(), body: part.substring(eq + 1) };
  }
  if (part.length > 1 && part[0] === '"' && part.endsWith('"')) return { name: 'text', body: part };
  if (part.length > 1 && part[0] === "'" && part.endsWith("'")) return { name: 'text', body: part };
  if (/^\(*\/\//.test(part) || part.startsWith('..')) return { name: 'xpath', body: part };
  return { name: 'css', body: part };
}

interface Scan {
  /** [start, end) of each `>>` step. */
  parts: [number, number][];
  /** The quote open at each position asked for (undefined: none). */
  quoteAt: Map<number, string | undefined>;
}

/**
 * Splits a selector into its `>>` steps the way Playwright's parser does (quotes and backslashes hide
 * `>>`; inside `text=` that already has text, quotes are plain characters), noting the open quote at
 * the positions in `probe`.
 */
function scan(selector: string, probe: ReadonlySet<number> = new Set()): Scan {
  const parts: [number, number][] = [];
  const quoteAt = new Map<number, string | undefined>();
  let quote: string | undefined;
  let start = 0;
  let i = 0;
  const ignoreQuote = () => /^\s*text\s*=(.*)$/.exec(selector.substring(start, i))?.[1];
  while (i < selector.length) {
    if (probe.has(i)) quoteAt.set(i, quote);
    const c = selector[i];
    if (c === '\\' && i + 1 < selector.length) {
      i += 2;
    } else if (c === quote) {
      quote = undefined;
      i++;
    } else if (!quote && (c === '"' || c === "'" || c === '`') && !ignoreQuote()) {
      quote = c;
      i++;
    } else if (!quote && c === '>' && selector[i + 1] === '>') {
      parts.push([start, i]);
      i += 2;
      start = i;
    } else {
      i++;
    }
  }
  parts.push([start, selector.length]);
  return { parts, quoteAt };
}

/** What a selector is made of: its steps' engines, nested selectors included. Values must not change it. */
function shape(selector: string): string {
  const { parts } = scan(selector);
  return parts
    .map(([s, e]) => {
      const { name, body } = engineOf(selector.substring(s, e).trim());
      if (!NESTED_ENGINES.has(name.replace(/^\*/, ''))) return name;
      try {
        const inner: unknown = JSON.parse(`[${body}]`);
        const first = Array.isArray(inner) ? (inner[0] as unknown) : undefined;
        return typeof first === 'string' ? `${name}(${shape(first)})` : `${name}(?)`;
      } catch {
        return `${name}(?)`;
      }
    })
    .join(' >> ');
}

const CONTROL = /[\u0000-\u001f\u007f]/g;

/** A value as literal text inside a `quote`-quoted string of a step with engine `engine`. */
function quoted(value: string, quote: string, engine: string, name: string): Filled {
  if (engine === 'xpath') {
    if (value.includes(quote) || value.includes('\\')) {
      return {
        refused: `{{input.${name}}} is inside an XPath string, which cannot escape ${quote} or \\: the value contains one`,
      };
    }
    return { text: value };
  }
  let text = value.replace(/\\/g, '\\\\').split(quote).join(`\\${quote}`);
  // A CSS string cannot hold a raw line break: CSS escapes it by code point.
  if (engine === 'css' || engine === 'css:light') {
    text = text.replace(CONTROL, (c) => `\\${c.charCodeAt(0).toString(16)} `);
  }
  return { text };
}

/**
 * Fills the placeholders of a selector (see the file's comment): values inside quoted strings are
 * escaped; a value that would change the selector's steps or engines is refused.
 */
export function fillSelector(template: string, input: Record<string, unknown>): Filled {
  // The template with each placeholder as a neutral stand-in, to learn where each one sits.
  const pieces: ({ lit: string } | { path: string; at: number })[] = [];
  let standIn = '';
  let last = 0;
  for (const m of template.matchAll(PLACEHOLDER)) {
    const lit = template.slice(last, m.index);
    standIn += lit;
    pieces.push({ lit }, { path: m[1] ?? '', at: standIn.length });
    standIn += 'x';
    last = m.index + m[0].length;
  }
  if (pieces.length === 0) return { text: template };
  pieces.push({ lit: template.slice(last) });
  standIn += template.slice(last);

  const probes = new Set(pieces.flatMap((p) => ('at' in p ? [p.at] : [])));
  const { parts, quoteAt } = scan(standIn, probes);
  const expected = shape(standIn);
  const texts: string[] = [];
  for (const p of pieces) {
    if ('lit' in p) {
      texts.push(p.lit);
      continue;
    }
    const value = placeholderText(input, p.path);
    if (value === undefined) return { missing: missingMessage(p.path) };
    const quote = quoteAt.get(p.at);
    let text = value;
    if (quote !== undefined) {
      const [s, e] = parts.find(([s, e]) => p.at >= s && p.at < e) ?? [0, standIn.length];
      const filled = quoted(value, quote, engineOf(standIn.substring(s, e).trim()).name, p.path);
      if (!('text' in filled)) return filled;
      text = filled.text;
    }
    // This value alone, the other placeholders still stand-ins: it must leave the selector's shape.
    const alone = standIn.slice(0, p.at) + text + standIn.slice(p.at + 1);
    if (shape(alone) !== expected) return { refused: changesShape(p.path, value) };
    texts.push(text);
  }
  const text = texts.join('');
  if (shape(text) !== expected) {
    return {
      refused: `the values of the selector's placeholders together change its steps or engine (${JSON.stringify(text.slice(0, 200))})`,
    };
  }
  return { text };
}

function changesShape(path: string, value: string): string {
  return (
    `the value of {{input.${path}}} (${JSON.stringify(value.slice(0, 100))}) would change the selector's steps or engine ` +
    `(">>", "engine=", "//", a quoted text): in a selector a placeholder is text; put it inside quotes, ` +
    `e.g. text="{{input.${path}}}" or [name="{{input.${path}}}"], to match it literally`
  );
}
