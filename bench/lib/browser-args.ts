import { chromiumArgs } from '../../src/browser/chromium.js';

/** Chromium flags for the raw playwright-core baseline: exactly those the runner's browser pool launches with. */
export const BENCH_BROWSER_ARGS: string[] = chromiumArgs();
export const BENCH_CHROMIUM_SANDBOX = typeof process.getuid === 'function' && process.getuid() !== 0;
