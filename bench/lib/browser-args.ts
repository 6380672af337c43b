/** Chromium flags for the raw playwright-core baseline: the same as the runner's browser pool launches with. */
export const BENCH_BROWSER_ARGS: string[] = ['--disable-dev-shm-usage', '--no-sandbox'];
