import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  chromium,
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  type CDPSession,
  type Page,
} from 'playwright-core';
import { chromiumArgs, egressArgs } from './chromium.js';
import type { EgressProxy } from './egress.js';
import { attachEgress } from './egress-page.js';
import { featureArgs } from './features.js';
import { logFn, type LogFn, type LogSink } from './log.js';
import {
  findPidsByArg,
  isAlive,
  killGroup,
  procCmdline,
  processTree,
  procStat,
  reapTree,
  treePssBytes,
} from './procfs.js';

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

export interface BrowserLease {
  context: BrowserContext;
  page: Page;
  release(): Promise<void>;
  /** The browser disconnected or the page's renderer crashed during this lease. */
  readonly crashed: boolean;
  /** Generation of the browser that serves this lease. */
  readonly generation: number;
}

export const DEFAULT_MAX_CONTEXTS_PER_BROWSER = 200;
const TEMP_PREFIX = 'sfw-browser-';
const OWNER_FILE = 'owner.json';
const CLEAR_TIMEOUT_MS = 5000;
/** A browser that has not closed by then is killed. */
const CLOSE_TIMEOUT_MS = 10_000;
const MEMORY_CHECK_INTERVAL_MS = 2000;
const GUIDE_BASE_BYTES = 500 * 2 ** 20;
const GUIDE_PER_CONTEXT_BYTES = 500 * 2 ** 20;

/** One launched Chromium. */
interface Instance {
  generation: number;
  browser: Browser;
  dir: string;
  pid: number | undefined;
  profileDir: string | undefined;
  contextsCreated: number;
  contexts: Set<BrowserContext>;
  retired: boolean;
  disconnected: boolean;
  /** Rejects when the browser disconnects: calls in flight then may never settle on their own. */
  gone: Promise<never>;
  closing: Promise<void> | undefined;
}

interface Ready {
  inst: Instance;
  context: BrowserContext;
  page: Page;
}

/** A context and page kept for one session type (`reuseContext`), cleared between its sessions. */
interface Kept extends Ready {
  busy: boolean;
  /** Set while the kept context is being cleared after its last session. */
  clearing: Promise<boolean> | undefined;
  origins: Set<string>;
  cdp: CDPSession | undefined;
}

interface OwnerRecord {
  ownerPid: number;
  ownerStart?: string;
  browserPid?: number;
  profileDir?: string;
}

/**
 * One Chromium per pool, a fresh BrowserContext per session. The browser is relaunched when it crashes
 * or disconnects and retired after `maxContextsPerBrowser` contexts or when over its memory budget: new
 * sessions go to a new browser, the old one closes when its last context is released. One context and
 * page are kept pre-warmed so an idle runner starts a session at once. Each browser's profile and cache
 * live in a temporary folder removed when it closes; folders left by a killed process are swept on start.
 */
export class BrowserPool {
  private readonly opts: BrowserPoolOptions;
  private readonly maxContexts: number;
  private readonly tempRoot: string;
  private readonly log: LogFn;
  private current: Instance | undefined;
  private readonly instances = new Set<Instance>();
  private launching: Promise<Instance> | undefined;
  private prewarmed: Ready | undefined;
  private prewarming: Promise<void> | undefined;
  private readonly kept = new Map<string, Kept>();
  private lastMemoryCheck = 0;
  private memoryCheck: Promise<void> | undefined;
  private closed = false;
  private gen = 0;

  constructor(opts: BrowserPoolOptions) {
    this.opts = opts;
    this.maxContexts = Math.max(1, opts.maxContextsPerBrowser ?? DEFAULT_MAX_CONTEXTS_PER_BROWSER);
    this.tempRoot = opts.tempDir ?? tmpdir();
    this.log = logFn(opts.log);
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
    if (this.opts.prewarm !== false) {
      this.schedulePrewarm();
      await this.prewarming;
    }
  }

  async acquire(opts: { reuseContext?: string } = {}): Promise<BrowserLease> {
    if (this.closed) throw new Error('the browser pool is closed');
    this.scheduleMemoryCheck();
    if (opts.reuseContext !== undefined) {
      const lease = await this.acquireKept(opts.reuseContext);
      if (lease) return lease;
    }
    if (!this.prewarmed && this.prewarming) await this.prewarming;
    const ready = this.takePrewarmed() ?? (await this.freshReady());
    this.schedulePrewarm();
    return this.lease(ready, undefined);
  }

  /** A new context and page; tried once more on a relaunched browser if the browser died meanwhile. */
  private async freshReady(): Promise<Ready> {
    for (let attempt = 1; ; attempt++) {
      const inst = await this.instance();
      try {
        return { inst, ...(await this.newContextPage(inst)) };
      } catch (err) {
        if (!inst.disconnected || attempt >= 2 || this.closed) throw err;
      }
    }
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
    await Promise.allSettled([this.launching, this.prewarming, this.memoryCheck]);
    this.prewarmed = undefined;
    this.kept.clear();
    this.current = undefined;
    await Promise.all([...this.instances].map((inst) => this.closeInstance(inst)));
  }

  // ---- browsers ----

  /** The browser new contexts go to, launching one when there is none. */
  private async instance(): Promise<Instance> {
    for (let i = 0; i < 3; i++) {
      const cur = this.current;
      if (cur && !cur.disconnected && !cur.retired) {
        if (cur.contextsCreated < this.maxContexts) return cur;
        this.retire(cur, `created ${cur.contextsCreated} contexts`);
      }
      if (this.closed) throw new Error('the browser pool is closed');
      this.launching ??= this.launch().finally(() => {
        this.launching = undefined;
      });
      await this.launching;
    }
    throw new Error('Chromium could not be started');
  }

  private async launch(): Promise<Instance> {
    const dir = await mkdtemp(join(this.tempRoot, TEMP_PREFIX));
    const owner: OwnerRecord = { ownerPid: process.pid, ownerStart: procStat(process.pid)?.startTime };
    await writeFile(join(dir, OWNER_FILE), JSON.stringify(owner));
    await mkdir(join(dir, 'artifacts'));
    const started = Date.now();
    let browser: Browser;
    try {
      const features = await featureArgs(this.tempRoot);
      browser = await chromium.launch({
        executablePath: this.opts.executablePath,
        headless: this.opts.headless ?? true,
        args: [
          ...chromiumArgs(),
          ...(this.opts.egress ? egressArgs(this.opts.egress.port) : []),
          ...features.args,
          `--disk-cache-dir=${join(dir, 'cache')}`,
        ],
        ignoreDefaultArgs: features.ignoreDefaultArgs,
        artifactsDir: join(dir, 'artifacts'),
        chromiumSandbox: typeof process.getuid === 'function' && process.getuid() !== 0,
        // The runner owns the signals: it drains sessions before closing the pool.
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        timeout: this.opts.launchTimeoutMs ?? 30_000,
      });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    if (this.opts.egress) attachEgress(browser, this.opts.egress);
    const pid = findPidsByArg(`--disk-cache-dir=${join(dir, 'cache')}`).find(
      (p) => procStat(p)?.ppid === process.pid,
    );
    const profileDir = pid === undefined ? undefined : argValue(procCmdline(pid), '--user-data-dir');
    await writeFile(join(dir, OWNER_FILE), JSON.stringify({ ...owner, browserPid: pid, profileDir }));
    let onGone = () => {};
    const gone = new Promise<never>((_, reject) => {
      onGone = () => reject(new Error('the browser disconnected'));
    });
    gone.catch(() => {});
    const inst: Instance = {
      generation: ++this.gen,
      browser,
      dir,
      pid,
      profileDir,
      contextsCreated: 0,
      contexts: new Set(),
      retired: false,
      disconnected: false,
      gone,
      closing: undefined,
    };
    browser.on('disconnected', () => {
      onGone();
      this.onDisconnected(inst);
    });
    this.instances.add(inst);
    if (this.closed) {
      await this.closeInstance(inst);
      throw new Error('the browser pool is closed');
    }
    this.current = inst;
    this.log('browser launched', { generation: inst.generation, pid, ms: Date.now() - started });
    return inst;
  }

  private onDisconnected(inst: Instance): void {
    inst.disconnected = true;
    if (!inst.closing) {
      this.log('browser disconnected', { generation: inst.generation, pid: inst.pid }, 'warn');
      // Whatever is left of it (a killed browser leaves its children briefly) goes, with its folders.
      inst.closing = this.cleanupInstance(inst);
    }
    this.forget(inst);
    if (this.current === inst) {
      this.current = undefined;
      // Relaunch now so the next session does not wait for Chromium to start.
      if (!this.closed) this.schedulePrewarm();
    }
  }

  private retire(inst: Instance, reason: string): void {
    if (inst.retired) return;
    inst.retired = true;
    this.log('browser retired', { generation: inst.generation, reason });
    if (this.current === inst) this.current = undefined;
    const idle: BrowserContext[] = [];
    if (this.prewarmed?.inst === inst) idle.push(this.prewarmed.context);
    for (const k of this.kept.values()) if (k.inst === inst && !k.busy) idle.push(k.context);
    this.forget(inst);
    for (const c of idle) c.close().catch(() => {});
    this.maybeCloseRetired(inst);
  }

  /** Drops the pre-warmed and kept contexts of a browser that takes no new sessions. */
  private forget(inst: Instance): void {
    if (this.prewarmed?.inst === inst) this.prewarmed = undefined;
    for (const [key, k] of this.kept) if (k.inst === inst) this.kept.delete(key);
  }

  private maybeCloseRetired(inst: Instance): void {
    if (inst.retired && inst.contexts.size === 0 && !inst.closing) void this.closeInstance(inst);
  }

  private closeInstance(inst: Instance): Promise<void> {
    inst.closing ??= (async () => {
      // Chromium's helpers are reparented when it exits: note them now to make sure they go too.
      const tree = inst.pid === undefined ? [] : await processTree(inst.pid);
      const procs = tree.map((pid) => procStat(pid)).filter((p) => p !== undefined);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        inst.browser.close().catch(() => {}),
        new Promise((r) => (timer = setTimeout(r, CLOSE_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
      await reapTree(procs, 2000);
      await this.cleanupInstance(inst);
    })();
    return inst.closing;
  }

  private async cleanupInstance(inst: Instance): Promise<void> {
    if (inst.pid !== undefined && procCmdline(inst.pid).some((a) => a.includes(inst.dir))) {
      killGroup(inst.pid);
    }
    if (inst.profileDir && isPlaywrightProfile(inst.profileDir)) {
      await rm(inst.profileDir, { recursive: true, force: true }).catch(() => {});
    }
    await rm(inst.dir, { recursive: true, force: true }).catch(() => {});
    this.instances.delete(inst);
  }

  private scheduleMemoryCheck(): void {
    if (this.memoryCheck || Date.now() - this.lastMemoryCheck < MEMORY_CHECK_INTERVAL_MS) return;
    this.lastMemoryCheck = Date.now();
    const inst = this.current;
    if (!inst?.pid || inst.contextsCreated < 2) return;
    // Without a fixed budget, the guide's allowance: 500 MB base plus 500 MB per open context.
    const budget =
      this.opts.memoryBudgetBytes ?? GUIDE_BASE_BYTES + GUIDE_PER_CONTEXT_BYTES * inst.contexts.size;
    this.memoryCheck = treePssBytes(inst.pid)
      .then((bytes) => {
        if (bytes > budget && !inst.retired && !inst.disconnected) {
          this.retire(
            inst,
            `memory ${Math.round(bytes / 2 ** 20)} MB over budget ${Math.round(budget / 2 ** 20)} MB`,
          );
        }
      })
      .catch(() => {})
      .finally(() => {
        this.memoryCheck = undefined;
      });
  }

  // ---- contexts ----

  private async newContextPage(inst: Instance): Promise<{ context: BrowserContext; page: Page }> {
    inst.contextsCreated++;
    const context = await Promise.race([inst.browser.newContext(this.opts.contextOptions), inst.gone]);
    inst.contexts.add(context);
    context.once('close', () => {
      inst.contexts.delete(context);
      this.maybeCloseRetired(inst);
    });
    try {
      return { context, page: await Promise.race([context.newPage(), inst.gone]) };
    } catch (err) {
      await context.close().catch(() => {});
      throw err;
    }
  }

  private takePrewarmed(): Ready | undefined {
    const ready = this.prewarmed;
    this.prewarmed = undefined;
    if (!ready || ready.inst !== this.current || ready.inst.disconnected || ready.page.isClosed()) {
      if (ready) ready.context.close().catch(() => {});
      return undefined;
    }
    return ready;
  }

  private schedulePrewarm(): void {
    if (this.opts.prewarm === false || this.closed || this.prewarming || this.prewarmed) return;
    this.prewarming = (async () => {
      try {
        const inst = await this.instance();
        const ready = { inst, ...(await this.newContextPage(inst)) };
        if (this.closed || inst !== this.current || this.prewarmed) {
          await ready.context.close().catch(() => {});
          return;
        }
        this.prewarmed = ready;
      } catch (err) {
        if (!this.closed) this.log('browser pre-warm failed', { error: (err as Error).message }, 'warn');
      }
    })().finally(() => {
      this.prewarming = undefined;
    });
  }

  private async acquireKept(key: string): Promise<BrowserLease | undefined> {
    // The previous session of this type is being cleared out: waiting for that beats a new context.
    await this.kept.get(key)?.clearing;
    const k = this.kept.get(key);
    if (k && !k.busy && k.inst === this.current && !k.inst.disconnected && !k.page.isClosed()) {
      k.busy = true;
      return this.lease(k, k);
    }
    // Another session of this type holds it: this one gets a fresh context.
    if (k?.busy) return undefined;
    if (k) this.kept.delete(key);
    const inst = await this.instance();
    const fresh: Kept = {
      inst,
      ...(await this.newContextPage(inst)),
      busy: true,
      clearing: undefined,
      origins: new Set(),
      cdp: undefined,
    };
    fresh.page.on('framenavigated', (frame) => {
      const origin = originOf(frame.url());
      if (origin) fresh.origins.add(origin);
    });
    if (!this.kept.has(key)) this.kept.set(key, fresh);
    return this.lease(fresh, this.kept.get(key) === fresh ? fresh : undefined);
  }

  private lease(ready: Ready, kept: Kept | undefined): BrowserLease {
    const { inst, context, page } = ready;
    let pageCrashed = false;
    const onCrash = () => {
      pageCrashed = true;
    };
    page.on('crash', onCrash);
    let released: Promise<void> | undefined;
    const release = async (): Promise<void> => {
      page.off('crash', onCrash);
      const keep = kept && !pageCrashed && !inst.retired && !inst.disconnected && inst === this.current;
      if (keep) {
        kept.clearing = clearKept(kept);
        if (await kept.clearing) {
          kept.clearing = undefined;
          kept.busy = false;
          return;
        }
      }
      for (const [key, k] of this.kept) if (k === kept) this.kept.delete(key);
      if (!inst.disconnected) await Promise.race([context.close(), inst.gone]).catch(() => {});
    };
    return {
      context,
      page,
      generation: inst.generation,
      get crashed() {
        return inst.disconnected || pageCrashed;
      },
      release: () => (released ??= release()),
    };
  }
}

/** Clears a kept context for its next session; false when that failed and the context should go. */
async function clearKept(k: Kept): Promise<boolean> {
  const work = async () => {
    const { context, page } = k;
    for (const p of context.pages()) if (p !== page) await p.close().catch(() => {});
    await page
      .evaluate(() => {
        try {
          localStorage.clear();
          sessionStorage.clear();
        } catch {
          // opaque origins have no storage
        }
      })
      .catch(() => {});
    k.cdp ??= await context.newCDPSession(page);
    for (const origin of k.origins) {
      await k.cdp.send('Storage.clearDataForOrigin', { origin, storageTypes: 'all' });
      await k.cdp
        .send('DOMStorage.clear', { storageId: { securityOrigin: origin, isLocalStorage: false } })
        .catch(() => {});
    }
    k.origins.clear();
    await page.goto('about:blank');
    await context.clearCookies();
    await context.clearPermissions();
    await context.unrouteAll({ behavior: 'ignoreErrors' });
    await page.unrouteAll({ behavior: 'ignoreErrors' });
    return true;
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), CLEAR_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work().catch(() => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function originOf(url: string): string | undefined {
  try {
    const origin = new URL(url).origin;
    return origin === 'null' ? undefined : origin;
  } catch {
    return undefined;
  }
}

function argValue(args: string[], name: string): string | undefined {
  const hit = args.find((a) => a.startsWith(`${name}=`));
  return hit?.slice(name.length + 1);
}

function isPlaywrightProfile(dir: string): boolean {
  return /^playwright_chromium(dev)?_profile-/.test(basename(dir));
}

/**
 * Removes what a killed process left behind: for each browser folder whose owning process is gone, its
 * Chromium (if one survived) and its folders. Returns how many were removed.
 */
export async function sweepLeftovers(root: string = tmpdir()): Promise<number> {
  let entries: string[];
  try {
    entries = (await readdir(root)).filter((e) => e.startsWith(TEMP_PREFIX));
  } catch {
    return 0;
  }
  let swept = 0;
  for (const entry of entries) {
    const dir = join(root, entry);
    let owner: OwnerRecord | undefined;
    try {
      owner = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as OwnerRecord;
    } catch {
      // No owner file: a launch interrupted before writing it. Leave young folders to their launcher.
      const age = await stat(dir).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age < 10 * 60_000) continue;
    }
    if (owner && isAlive(owner.ownerPid, owner.ownerStart)) continue;
    for (const pid of findPidsByArg(dir)) killGroup(pid);
    if (owner?.profileDir && isPlaywrightProfile(owner.profileDir)) {
      await rm(owner.profileDir, { recursive: true, force: true }).catch(() => {});
    }
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    swept++;
  }
  return swept;
}
