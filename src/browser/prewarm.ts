import type { BrowserContext } from 'playwright-core';
import type { ContextSource, Ready } from './contexts.js';
import type { Instance } from './launch.js';
import type { LogFn } from './log.js';

export interface PrewarmSource extends ContextSource {
  closed(): boolean;
  log: LogFn;
}

/** One context and page opened ahead of the next session, so an idle runner starts it at once. */
export class Prewarm {
  private ready: Ready | undefined;
  private warming: Promise<void> | undefined;
  private readonly source: PrewarmSource;

  constructor(source: PrewarmSource) {
    this.source = source;
  }

  /** The opening under way, if any. */
  get pending(): Promise<void> | undefined {
    return this.warming;
  }

  /** Starts opening the next ready context unless one is ready or on its way. */
  schedule(): void {
    if (this.source.closed() || this.warming || this.ready) return;
    this.warming = (async () => {
      try {
        const ready = await this.source.open();
        if (this.source.closed() || ready.inst !== this.source.current() || this.ready) {
          await ready.context.close().catch(() => {});
          return;
        }
        this.ready = ready;
      } catch (err) {
        if (!this.source.closed()) {
          this.source.log('browser pre-warm failed', { error: (err as Error).message }, 'warn');
        }
      }
    })().finally(() => {
      this.warming = undefined;
    });
  }

  /**
   * The ready context (after the opening under way, if none is ready) when it is still usable on the
   * current browser; a stale one is closed.
   */
  async take(): Promise<Ready | undefined> {
    if (!this.ready && this.warming) await this.warming;
    const ready = this.ready;
    this.ready = undefined;
    if (!ready || ready.inst !== this.source.current() || ready.inst.disconnected || ready.page.isClosed()) {
      if (ready) ready.context.close().catch(() => {});
      return undefined;
    }
    return ready;
  }

  /** The ready context, if it is on `inst` (no session holds it). */
  idle(inst: Instance): BrowserContext[] {
    return this.ready?.inst === inst ? [this.ready.context] : [];
  }

  /** Drops the ready context of a browser that takes no new sessions. */
  forget(inst: Instance): void {
    if (this.ready?.inst === inst) this.ready = undefined;
  }

  clear(): void {
    this.ready = undefined;
  }
}
