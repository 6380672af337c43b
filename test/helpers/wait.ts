/**
 * Polls `check` until it returns a truthy value or the deadline passes (no sleep-and-hope). An error
 * `fatal` accepts, or the signal's abort, ends the wait at once; other errors are retried (the last one
 * is named on timeout). Shared by the tests, the benchmarks and the demo scripts.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: {
    timeoutMs?: number;
    intervalMs?: number;
    what?: string;
    signal?: AbortSignal | undefined;
    fatal?: (err: unknown) => boolean;
  } = {},
): Promise<T> {
  const until = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    if (opts.signal?.aborted) throw new Error(`interrupted while waiting for ${opts.what ?? 'condition'}`);
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      if (opts.fatal?.(err)) throw err;
      last = err;
    }
    if (Date.now() > until) {
      throw new Error(
        `timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${(last as Error).message}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}
