import type { BrowserContext, CDPSession } from 'playwright-core';
import { leaseContext, type BrowserLease, type ContextSource, type Ready } from './contexts.js';
import type { Instance } from './launch.js';

const CLEAR_TIMEOUT_MS = 5000;

/** A context and page kept for one session type (`reuseContext`), cleared between its sessions. */
interface Kept extends Ready {
  busy: boolean;
  /** Set while the kept context is being cleared after its last session. */
  clearing: Promise<boolean> | undefined;
  origins: Set<string>;
  cdp: CDPSession | undefined;
}

/**
 * One context and page per session type, reused by its next session once cleared (cookies, storage of
 * every origin it visited, permissions, routes, extra pages). A second session of the type while the
 * first holds it, or one after a crash or a failed clearing, gets a fresh context instead.
 */
export class KeptContexts {
  private readonly kept = new Map<string, Kept>();
  private readonly source: ContextSource;

  constructor(source: ContextSource) {
    this.source = source;
  }

  /** A lease on the kept context of `key`; undefined when another session holds it. */
  async acquire(key: string): Promise<BrowserLease | undefined> {
    // The previous session of this type is being cleared out: waiting for that beats a new context.
    await this.kept.get(key)?.clearing;
    const k = this.kept.get(key);
    if (k && !k.busy && k.inst === this.source.current() && !k.inst.disconnected && !k.page.isClosed()) {
      k.busy = true;
      return this.lease(k);
    }
    // Another session of this type holds it: this one gets a fresh context.
    if (k?.busy) return undefined;
    if (k) this.kept.delete(key);
    const fresh: Kept = {
      ...(await this.source.open()),
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
    return this.kept.get(key) === fresh ? this.lease(fresh) : leaseContext(fresh);
  }

  /** The kept contexts of `inst` no session holds. */
  idle(inst: Instance): BrowserContext[] {
    return [...this.kept.values()].filter((k) => k.inst === inst && !k.busy).map((k) => k.context);
  }

  /** Stops keeping the contexts of a browser that takes no new sessions. */
  forget(inst: Instance): void {
    for (const [key, k] of this.kept) if (k.inst === inst) this.kept.delete(key);
  }

  clear(): void {
    this.kept.clear();
  }

  /** On release the context is cleared for the next session of its type, or dropped. */
  private lease(k: Kept): BrowserLease {
    return leaseContext(k, async (pageCrashed) => {
      const inst = k.inst;
      if (!pageCrashed && !inst.retired && !inst.disconnected && inst === this.source.current()) {
        k.clearing = clearKept(k);
        if (await k.clearing) {
          k.clearing = undefined;
          k.busy = false;
          return true;
        }
      }
      for (const [key, e] of this.kept) if (e === k) this.kept.delete(key);
      return false;
    });
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
