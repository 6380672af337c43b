import type { BenchPostgres } from './env.js';

/** What each part gets from the harness. */
export interface BenchContext {
  pg: BenchPostgres;
  smoke: boolean;
  log(line: string): void;
}

/** Full size, or the smoke size when BENCH_SMOKE=1. */
export function size(ctx: BenchContext, full: number, smoke: number): number {
  const override = process.env[`BENCH_N`];
  if (override && !ctx.smoke) return Math.max(1, Math.round((full * Number(override)) / 100));
  return ctx.smoke ? smoke : full;
}
