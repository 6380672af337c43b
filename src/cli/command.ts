import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, SfwError } from '../core/errors.js';
import { describeConfig, type ConfigKey, CONFIG_FIELDS } from '../core/config.js';

/** A small CLI framework: one file per command, flags declared once, help generated from them. */

export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  description: string;
  multiple?: boolean;
  /** What the value is, in the help (`--wait-ms <ms>`; default `value`). */
  value?: string;
}

export interface CommandContext {
  flags: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  env: Record<string, string | undefined>;
  out: (line: string) => void;
  err: (line: string) => void;
  /** Writes to stdout as it is (no newline added): file contents. */
  write: (data: string | Uint8Array) => void;
  /** Whether stderr is a terminal (progress bars). */
  isTTY: boolean;
  /** Whether stdout is a terminal. */
  stdoutIsTTY?: boolean;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  flags?: Record<string, FlagSpec>;
  /** Config fields this command reads; they become flags too (flag > env > default). */
  config?: readonly ConfigKey[];
  maxPositionals?: number;
  run(ctx: CommandContext): Promise<number | void>;
}

export function defineCommand(c: Command): Command {
  return c;
}

export const JSON_FLAG: Record<string, FlagSpec> = {
  json: { type: 'boolean', description: 'Print JSON instead of a table' },
};

/** Width of the help text; descriptions wrap within it. */
const HELP_WIDTH = 100;
/** A flag or setting longer than this has its description on the next line. */
const HELP_LEFT_MAX = 34;

export function helpText(c: Command): string {
  const lines = [`sfw ${c.name} — ${c.summary}`, '', `Usage: sfw ${c.usage}`];
  const flags: [string, string][] = Object.entries(c.flags ?? {}).map(([name, f]) => [
    `${f.short ? `-${f.short}, ` : ''}--${name}${f.type === 'string' ? ` <${f.value ?? 'value'}>` : ''}`,
    f.description,
  ]);
  flags.push(['--help', 'Show this help']);
  const settings: [string, string][] = describeConfig(c.config ?? []).map((row) => [
    `${row.flag} / ${row.env}`,
    row.description + (row.default ? ` (default ${row.default})` : ''),
  ]);
  // One column for both tables: the longest left cell that still leaves room, the others wrap below it.
  const fitting = [...flags, ...settings].map(([left]) => left.length).filter((n) => n <= HELP_LEFT_MAX);
  const column = Math.max(0, ...fitting);
  lines.push('', 'Flags:', ...helpRows(flags, column));
  if (settings.length > 0)
    lines.push('', 'Settings (flag or environment variable):', ...helpRows(settings, column));
  return lines.join('\n');
}

/**
 * Rows of a help table: the left cell, two spaces at least, then the description wrapped under itself.
 * A left cell wider than the column stands alone and its description starts on the next line.
 */
function helpRows(rows: [string, string][], column: number): string[] {
  const indent = ' '.repeat(2 + column + 2);
  const out: string[] = [];
  for (const [left, description] of rows) {
    const text = wrap(description, Math.max(30, HELP_WIDTH - indent.length));
    if (left.length > column) {
      out.push(`  ${left}`);
      for (const l of text) out.push(indent + l);
      continue;
    }
    text.forEach((l, i) => out.push(i === 0 ? `  ${left.padEnd(column)}  ${l}` : indent + l));
  }
  return out;
}

/** Greedy word wrap; a word longer than the width gets a line of its own. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line || lines.length === 0) lines.push(line);
  return lines;
}

/** Parses argv for a command; unknown or malformed flags become a CLI message naming the flag. */
export function parseCommandArgs(
  c: Command,
  argv: string[],
): { flags: CommandContext['flags']; positionals: string[]; help: boolean } {
  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, f] of Object.entries(c.flags ?? {})) {
    options[name] = {
      type: f.type,
      ...(f.short ? { short: f.short } : {}),
      ...(f.multiple ? { multiple: true } : {}),
    };
  }
  for (const key of c.config ?? [])
    options[CONFIG_FIELDS[key].flag] = { type: CONFIG_FIELDS[key].kind === 'bool' ? 'boolean' : 'string' };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new ConfigError(`${msg}. See: sfw ${c.name} --help`);
  }
  const help = parsed.values.help === true;
  if (!help && c.maxPositionals !== undefined && parsed.positionals.length > c.maxPositionals) {
    throw new ConfigError(
      `unexpected argument "${parsed.positionals[c.maxPositionals]}". Usage: sfw ${c.usage}`,
    );
  }
  return { flags: parsed.values as CommandContext['flags'], positionals: parsed.positionals, help };
}

export function str(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function intFlag(ctx: CommandContext, name: string, min: number, max: number): number | undefined {
  const v = str(ctx, name);
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new ConfigError(`--${name} must be a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Pads columns into a plain-text table. */
export function table(head: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [head, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '' : String(c))))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (c ?? '').padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function describeError(err: unknown): string {
  if (err instanceof SfwError) return err.message;
  return (err as Error).message ?? String(err);
}
