import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, SfwError } from '../core/errors.js';
import { describeConfig, type ConfigKey, CONFIG_FIELDS } from '../core/config.js';

/** A small CLI framework: one file per command, flags declared once, help generated from them. */

export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  description: string;
  multiple?: boolean;
}

export interface CommandContext {
  flags: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  env: Record<string, string | undefined>;
  out: (line: string) => void;
  err: (line: string) => void;
  isTTY: boolean;
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

export function helpText(c: Command): string {
  const lines = [`sfw ${c.name} — ${c.summary}`, '', `Usage: sfw ${c.usage}`];
  const flags = Object.entries(c.flags ?? {});
  if (flags.length > 0) {
    lines.push('', 'Flags:');
    for (const [name, f] of flags)
      lines.push(`  --${name}${f.type === 'string' ? ' <value>' : ''}`.padEnd(34) + f.description);
  }
  if (c.config && c.config.length > 0) {
    lines.push('', 'Settings (flag or environment variable):');
    for (const row of describeConfig(c.config)) {
      lines.push(
        `  ${row.flag} / ${row.env}`.padEnd(50) +
          row.description +
          (row.default ? ` (default ${row.default})` : ''),
      );
    }
  }
  lines.push('  --help'.padEnd(34) + 'Show this help');
  return lines.join('\n');
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
