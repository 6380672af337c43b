import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** What every result file records: the machine, the versions, the date and the command. */

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where runs write their files (not kept in the repository). */
export const RESULTS_DIR = path.join(ROOT, 'bench', 'results', 'runs');
/** The result files the documentation cites, kept in the repository. */
export const CITED_DIR = path.join(ROOT, 'bench', 'results');

export type Row = Record<string, string | number | boolean | null>;

export interface PartResult {
  part: string;
  /** Headline figures, one row per measured variant. */
  rows: Row[];
  /** Ratios against the baseline of the same run. */
  ratios: Record<string, number>;
  /** Anything that bounds or qualifies the figures. */
  notes: string[];
  /** Raw details (latency summaries, plans…). */
  details?: Record<string, unknown>;
}

function pkgVersion(name: string): string {
  try {
    const file = path.join(ROOT, 'node_modules', name, 'package.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return 'missing';
  }
}

export function chromiumPath(): string {
  return process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
}

function chromiumVersion(): string {
  try {
    return execFileSync(chromiumPath(), ['--version'], {
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
  } catch {
    return 'unavailable';
  }
}

export interface Environment {
  date: string;
  command: string;
  smoke: boolean;
  machine: { cpus: number; cpuModel: string; memMB: number; os: string; loadavg: number[] };
  versions: Record<string, string>;
}

export function environment(postgresVersion: string, smoke: boolean): Environment {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    command: [
      ...Object.entries(process.env)
        .filter(([k]) => k.startsWith('BENCH_') && k !== 'BENCH_DATABASE_URL')
        .map(([k, v]) => `${k}=${v}`),
      path.basename(process.argv0),
      ...process.execArgv,
      ...process.argv.slice(1),
    ]
      .map((a) => a.replace(ROOT, ''))
      .join(' '),
    smoke,
    machine: {
      cpus: cpus.length,
      cpuModel: cpus[0]?.model ?? 'unknown',
      memMB: Math.round(os.totalmem() / 2 ** 20),
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    },
    versions: {
      node: process.version,
      postgres: postgresVersion,
      chromium: chromiumVersion(),
      'playwright-core': pkgVersion('playwright-core'),
      'graphile-worker': pkgVersion('graphile-worker'),
      'session-framework': pkgVersion('..'),
    },
  };
}

/** Writes bench/results/runs/<part>-<date>.json (or the smoke folder) and returns its path. */
export async function writeResult(env: Environment, result: PartResult, dir = RESULTS_DIR): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stamp = env.date.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const file = path.join(dir, `${result.part}-${stamp}.json`);
  await writeFile(file, JSON.stringify({ ...env, loadavgAfter: os.loadavg(), ...result }, null, 2) + '\n');
  return file;
}

/** A plain text table: the columns are the union of the rows' keys. */
export function formatTable(rows: Row[]): string {
  if (rows.length === 0) return '(no rows)';
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: Row[string] | undefined) => (v === undefined || v === null ? '' : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ');
  return [
    line(cols),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(cols.map((c) => cell(r[c])))),
  ].join('\n');
}

export function printResult(result: PartResult, log: (s: string) => void = console.log): void {
  log(`\n== ${result.part} ==`);
  log(formatTable(result.rows));
  for (const [k, v] of Object.entries(result.ratios)) log(`ratio ${k}: ${v}`);
  for (const n of result.notes) log(`note: ${n}`);
}
