import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { PARTS, runBench } from '../../bench/run.js';
import { CITED_DIR, ROOT } from '../../bench/lib/report.js';

/**
 * The benchmark harness still runs end to end at tiny sizes (BENCH_SMOKE): every part produces rows and
 * a result file with the machine and versions. Nothing here is about speed.
 */

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('bench smoke', () => {
  it('runs every part at smoke size and writes result files', { timeout: 240_000 }, async () => {
    const resultsDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-bench-smoke-test-'));
    dirs.push(resultsDir);
    const lines: string[] = [];
    const parts = Object.keys(PARTS);
    const run = await runBench(parts, {
      smoke: true,
      resultsDir,
      adminUrl: inject('pgAdminUrl'),
      log: (l) => lines.push(l),
    });

    expect(run.failed, lines.join('\n').slice(-4000)).toEqual([]);
    expect(run.results.map((r) => r.part)).toEqual(parts);
    expect(run.files).toHaveLength(parts.length);
    for (const [i, result] of run.results.entries()) {
      expect(result.rows.length, result.part).toBeGreaterThan(0);
      const file = JSON.parse(await readFile(run.files[i]!, 'utf8')) as Record<string, unknown> & {
        machine: { cpus: number };
        versions: Record<string, string>;
      };
      expect(file.part).toBe(result.part);
      expect(file.smoke).toBe(true);
      expect(file.machine.cpus).toBeGreaterThan(0);
      expect(Object.keys(file.versions)).toEqual(
        expect.arrayContaining(['node', 'postgres', 'chromium', 'playwright-core', 'graphile-worker']),
      );
      expect(typeof file.command).toBe('string');
      // Every measured ratio is a number (a missing side would be NaN, written as null).
      for (const [name, value] of Object.entries(result.ratios))
        expect(Number.isFinite(value), name).toBe(true);
    }

    // The sfw side of the throughput part ran through real runner processes, not only graphile-worker.
    const throughput = run.results.find((r) => r.part === 'throughput')!;
    expect(throughput.rows.map((r) => r.system)).toEqual(
      expect.arrayContaining(['graphile-worker', expect.stringMatching(/^sfw, \d+ runner processes/)]),
    );
    expect(lines.join('\n')).toContain('== scale ==');

    // The fleet part measured its idle fleet and woke it (simulated runners in this process).
    const fleet = run.results.find((r) => r.part === 'fleet')!;
    expect(fleet.rows[0]!.N).toBe(10);
    expect(fleet.rows[0]!['PG xact/s']).toBeGreaterThan(0);
    expect(fleet.rows[0]!['wake p50 ms']).toBeGreaterThan(0);
    expect(fleet.rows[0]!['burst sessions/s']).toBeGreaterThan(0);
  });

  it('keeps in bench/results exactly the result files the documentation cites', async () => {
    const docs = await Promise.all(
      [
        'README.md',
        ...(await readdir(path.join(ROOT, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
      ].map((f) => readFile(path.join(ROOT, f), 'utf8')),
    );
    const cited = new Set(docs.join('\n').match(/[a-z]+(?:-[a-z]+)*-\d{4}-\d\d-\d\dT[\d-]+Z\.json/g) ?? []);
    const kept = new Set((await readdir(CITED_DIR)).filter((f) => f.endsWith('.json')));
    expect(
      [...kept].filter((f) => !cited.has(f)),
      'kept but cited nowhere',
    ).toEqual([]);
    expect(
      [...cited].filter((f) => !kept.has(f)),
      'cited but missing',
    ).toEqual([]);
  });
});
