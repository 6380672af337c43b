import type { Notifier } from '../store/notify.js';

/**
 * Long-poll waits of clients on a session (`/wait`): resolve when its notification arrives, when `ms`
 * passes, or when the request goes away. Callers re-check the database after every wake, so a lost
 * notification only costs one poll tick. (Runners' waiting claims wait in ClaimHub, src/server/claims.ts.)
 */
export class Waiters {
  private closed = false;
  private readonly closers = new Set<() => void>();

  constructor(
    private readonly notifier: Notifier | undefined,
    private readonly fallbackPollMs = 1000,
  ) {}

  /** How long to sleep between database checks while waiting. */
  get pollMs(): number {
    return this.notifier?.connected ? this.fallbackPollMs : 250;
  }

  waitForDone(id: string, ms: number, signal?: AbortSignal): Promise<void> {
    return this.wait(ms, signal, (wake) => {
      const onDone = (doneId: string) => {
        if (doneId === id) wake();
      };
      this.notifier?.on('done', onDone);
      return () => this.notifier?.off('done', onDone);
    });
  }

  private wait(
    ms: number,
    signal: AbortSignal | undefined,
    subscribe: (wake: () => void) => () => void,
  ): Promise<void> {
    if (this.closed || signal?.aborted || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      let unsubscribe = () => {};
      const done = () => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', done);
        this.closers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      unsubscribe = subscribe(done);
      signal?.addEventListener('abort', done, { once: true });
      this.closers.add(done);
    });
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.closers]) c();
  }
}

/** An AbortSignal that fires when the client's connection closes before we answered. */
export function requestGone(res: {
  on(event: 'close', fn: () => void): unknown;
  writableFinished: boolean;
}): AbortSignal {
  const ac = new AbortController();
  // The response's 'close' before it finished means the client went away (the request's own 'close'
  // fires as soon as its body was read).
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  return ac.signal;
}
