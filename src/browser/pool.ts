import { tmpdir } from 'node:os';
import type { BrowserContextOptions } from 'playwright-core';
import { leaseContext, openContext, type BrowserLease, type Ready } from './contexts.js';
import type { EgressProxy } from './egress.js';
import { sweepLeftovers } from './folders.js';
import { KeptContexts } from './kept.js';
import { closeBrowser, launchBrowser, removeBrowser, type Instance } from './launch.js';
import { logFn, type LogFn, type LogSink } from './log.js';
import { Prewarm } from './prewarm.js';
import { treePssBytes } from './procfs.js';
import { RetirePolicy } from './retire.js';

export type { BrowserLease } from './contexts.js';
export { DEFAULT_MAX_CONTEXTS_PER_BROWSER } from './retire.js';

export interface BrowserPoolOptions {
  executablePath: string;
  /** Retire a browser after it has created this many contexts (default 200). */
  maxContextsPerBrowser?: number;
  /**
   * Retire a browser when its process tree's PSS passes this many bytes. Default: the scaling guide's
   * allowance, 500 MB plus 500 MB per open context (catches a browser that leaks, not a busy one).
   */
  memoryBudgetBytes?: number;
  log?: LogSink;
  headless?: boolean;
  /** Folder for the per-browser temporary folders (profile, cache); default the OS temp folder. */
  tempDir?: string;
  /** Keep one context and page ready (default true). */
  prewarm?: boolean;
  launchTimeoutMs?: number;
  contextOptions?: BrowserContextOptions;
  /** A started egress proxy: the browser then connects through it only (see egressArgs). */
  egress?: EgressProxy;
}

/**
 * One Chromium per pool, a fresh BrowserContext per session. The browser is relaunched when it crashes
 * or disconnects and retired by its RetirePolicy (retire.ts): new sessions go to a new browser, the old
 * one closes when its last context is released. One context and page are kept pre-warmed (prewarm.ts)
 * and `reuseContext` sessions get their type's kept context (kept.ts). Launching, closing and reaping
 * Chromium is launch.ts; each browser's folders, and the sweep of those a killed process left, folders.ts.
 */
export class BrowserPool {
  private readonly opts: BrowserPoolOptions;
  private readonly tempRoot: string;
  private readonly log: LogFn;
  private readonly retirement: RetirePolicy;
  private readonly prewarm: Prewarm | undefined;
  private readonly kept: KeptContexts;
  private current: Instance | undefined;
  private readonly instances = new Set<Instance>();
  private launching: Promise<Instance> | undefined;
  private closed = false;
  private gen = 0;

  constructor(opts: BrowserPoolOptions) {
    this.opts = opts;
    this.tempRoot = opts.tempDir ?? tmpdir();
    this.log = logFn(opts.log);
    this.retirement = new RetirePolicy(opts, (inst, reason) => this.retire(inst, reason));
    const source = {
      closed: () => this.closed,
      current: () => this.current,
      open: () => this.open(),
      log: this.log,
    };
    this.prewarm = opts.prewarm === false ? undefined : new Prewarm(source);
    this.kept = new KeptContexts(source);
  }

  /** Increments on each (re)launch of Chromium. */
  get generation(): number {
    return this.gen;
  }

  /** Process id of the current Chromium, if running. */
  get browserPid(): number | undefined {
    return this.current?.pid;
  }

  /** Folder holding the current browser's profile and cache (unique per launch). */
  get browserDir(): string | undefined {
    return this.current?.dir;
  }

  async start(): Promise<void> {
    const swept = await sweepLeftovers(this.tempRoot);
    if (swept > 0) this.log('removed leftovers of a browser whose process was killed', { count: swept });
    await this.instance();
    if (this.prewarm) {
      this.prewarm.schedule();
      await this.prewarm.pending;
    }
  }

  /**
   * A context and page for one session. With `contextOptions` (a session's own browser options, over the
   * pool's) the context is a fresh one made with them: neither the pre-warmed nor a kept context.
   */
  async acquire(
    opts: { reuseContext?: string; contextOptions?: BrowserContextOptions } = {},
  ): Promise<BrowserLease> {
    if (this.closed) throw new Error('the browser pool is closed');
    this.retirement.checkMemory(this.current);
    if (opts.contextOptions) return leaseContext(await this.freshReady(opts.contextOptions));
    if (opts.reuseContext !== undefined) {
      const lease = await this.kept.acquire(opts.reuseContext);
      if (lease) return lease;
    }
    const ready = (await this.prewarm?.take()) ?? (await this.freshReady());
    this.prewarm?.schedule();
    return leaseContext(ready);
  }

  /** Proportional set size of all running Chromium process trees of this pool, in bytes. */
  async browserMemoryBytes(): Promise<number> {
    const sizes = await Promise.all(
      [...this.instances].map((i) =>
        i.pid === undefined || i.disconnected ? Promise.resolve(0) : treePssBytes(i.pid),
      ),
    );
    return sizes.reduce((a, b) => a + b, 0);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([this.launching, this.prewarm?.pending, this.retirement.checking]);
    this.prewarm?.clear();
    this.kept.clear();
    this.current = undefined;
    await Promise.all([...this.instances].map((inst) => this.closeInstance(inst)));
  }

  /** A new context and page; tried once more on a relaunched browser if the browser died meanwhile. */
  private async freshReady(options?: BrowserContextOptions): Promise<Ready> {
    for (let attempt = 1; ; attempt++) {
      const inst = await this.instance();
      try {
        return await this.openOn(inst, options);
      } catch (err) {
        if (!inst.disconnected || attempt >= 2 || this.closed) throw err;
      }
    }
  }

  /** A new context and page on the browser new contexts go to. */
  private async open(): Promise<Ready> {
    return this.openOn(await this.instance());
  }

  private openOn(inst: Instance, options?: BrowserContextOptions): Promise<Ready> {
    const merged = options ? { ...this.opts.contextOptions, ...options } : this.opts.contextOptions;
    return openContext(inst, merged, () => this.maybeCloseRetired(inst));
  }

  /** The browser new contexts go to, launching one when there is none. */
  private async instance(): Promise<Instance> {
    for (let i = 0; i < 3; i++) {
      const cur = this.current;
      if (cur && !cur.disconnected && !cur.retired && !this.retirement.spent(cur)) return cur;
      if (this.closed) throw new Error('the browser pool is closed');
      this.launching ??= this.launch().finally(() => {
        this.launching = undefined;
      });
      await this.launching;
    }
    throw new Error('Chromium could not be started');
  }

  private async launch(): Promise<Instance> {
    const started = Date.now();
    const inst = await launchBrowser({ ...this.opts, tempRoot: this.tempRoot }, this.gen + 1, (i) =>
      this.onDisconnected(i),
    );
    this.gen = inst.generation;
    this.instances.add(inst);
    if (this.closed) {
      await this.closeInstance(inst);
      throw new Error('the browser pool is closed');
    }
    this.current = inst;
    this.log('browser launched', { generation: inst.generation, pid: inst.pid, ms: Date.now() - started });
    return inst;
  }

  private onDisconnected(inst: Instance): void {
    inst.disconnected = true;
    if (!inst.closing) {
      this.log('browser disconnected', { generation: inst.generation, pid: inst.pid }, 'warn');
      // Whatever is left of it (a killed browser leaves its children briefly) goes, with its folders.
      inst.closing = removeBrowser(inst).then(() => void this.instances.delete(inst));
    }
    this.forget(inst);
    if (this.current === inst) {
      this.current = undefined;
      // Relaunch now so the next session does not wait for Chromium to start.
      if (!this.closed) this.prewarm?.schedule();
    }
  }

  private retire(inst: Instance, reason: string): void {
    if (inst.retired) return;
    inst.retired = true;
    this.log('browser retired', { generation: inst.generation, reason });
    if (this.current === inst) this.current = undefined;
    const idle = [...(this.prewarm?.idle(inst) ?? []), ...this.kept.idle(inst)];
    this.forget(inst);
    for (const c of idle) c.close().catch(() => {});
    this.maybeCloseRetired(inst);
  }

  /** Drops the pre-warmed and kept contexts of a browser that takes no new sessions. */
  private forget(inst: Instance): void {
    this.prewarm?.forget(inst);
    this.kept.forget(inst);
  }

  private maybeCloseRetired(inst: Instance): void {
    if (inst.retired && inst.contexts.size === 0 && !inst.closing) void this.closeInstance(inst);
  }

  private closeInstance(inst: Instance): Promise<void> {
    inst.closing ??= closeBrowser(inst).then(() => void this.instances.delete(inst));
    return inst.closing;
  }
}
