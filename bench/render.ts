import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PartResult, Row } from './lib/report.js';

/** Prints result files as Markdown (for docs/performance.md): `node --import tsx bench/render.ts <file.json>…`. */

type ResultFile = PartResult & {
  date: string;
  command: string;
  machine: { cpus: number; cpuModel: string; memMB: number; os: string; loadavg: number[] };
  versions: Record<string, string>;
  loadavgAfter?: number[];
};

function markdownTable(rows: Row[]): string {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: Row[string] | undefined) => (v === undefined || v === null ? '' : String(v));
  return [
    `| ${cols.join(' | ')} |`,
    `| ${cols.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${cols.map((c) => cell(r[c])).join(' | ')} |`),
  ].join('\n');
}

for (const file of process.argv.slice(2)) {
  const r = JSON.parse(await readFile(file, 'utf8')) as ResultFile;
  const out = [
    `#### ${r.part} — \`${path.basename(file)}\``,
    '',
    markdownTable(r.rows),
    '',
    ...Object.entries(r.ratios).map(([k, v]) => `- **${k}: ${v}**`),
    ...r.notes.map((n) => `- ${n}`),
    `- ${r.date}, ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memMB} MB, load average before ${r.machine.loadavg.join(' ')}, after ${(r.loadavgAfter ?? []).map((x) => x.toFixed(2)).join(' ')}; \`${r.command}\``,
    '',
  ];
  console.log(out.join('\n'));
}
