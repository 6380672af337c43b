import type { BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import { EGRESS_PROXY_HOST } from './chromium.js';
import type { EgressRoute } from './egress.js';
import { attachRoute } from './egress-page.js';
import type { Instance } from './launch.js';

export interface BrowserLease {
  context: BrowserContext;
  page: Page;
  release(): Promise<void>;
  /** The browser disconnected or the page's renderer crashed during this lease. */
  readonly crashed: boolean;
  /** Generation of the browser that serves this lease. */
  readonly generation: number;
}

/** A context and page on a browser, not leased to a session yet. */
export interface Ready {
  inst: Instance;
  context: BrowserContext;
  page: Page;
}

/** What the holders of contexts kept ahead of sessions (prewarm.ts, kept.ts) need of the pool. */
export interface ContextSource {
  /** The browser new sessions go to; a context held on another browser is not handed out. */
  current(): Instance | undefined;
  /** A new context and page on the current browser, launching one when there is none. */
  open(): Promise<Ready>;
}

/**
 * A new context and page on `inst`, counted against its allowance. `onClose` runs when the context
 * closes (the pool then closes a retired browser that has none left). A context with a `proxy` on a
 * browser behind the egress proxy gets a route there instead: it talks to the egress proxy with
 * credentials of its own, and the egress proxy, after its checks, goes through the given proxy.
 */
export async function openContext(
  inst: Instance,
  options: BrowserContextOptions | undefined,
  onClose: () => void,
): Promise<Ready> {
  inst.contextsCreated++;
  const route = options?.proxy && inst.egress ? inst.egress.addRoute(options.proxy) : undefined;
  let context: BrowserContext;
  try {
    context = await Promise.race([inst.browser.newContext(routed(options, route)), inst.gone]);
  } catch (err) {
    route?.close();
    throw err;
  }
  if (route) attachRoute(context, route.id);
  inst.contexts.add(context);
  context.once('close', () => {
    route?.close();
    inst.contexts.delete(context);
    onClose();
  });
  try {
    return { inst, context, page: await Promise.race([context.newPage(), inst.gone]) };
  } catch (err) {
    await context.close().catch(() => {});
    throw err;
  }
}

/**
 * Leases `ready` to one session. Its release closes the context, unless `keep` (given whether the page
 * crashed) takes it back for a later session and resolves true. Release runs once however often called.
 */
export function leaseContext(ready: Ready, keep?: (pageCrashed: boolean) => Promise<boolean>): BrowserLease {
  const { inst, context, page } = ready;
  let pageCrashed = false;
  const onCrash = () => {
    pageCrashed = true;
  };
  page.on('crash', onCrash);
  let released: Promise<void> | undefined;
  const release = async (): Promise<void> => {
    page.off('crash', onCrash);
    if (keep && (await keep(pageCrashed))) return;
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

/** The context's options with its proxy replaced by its route on the egress proxy. */
function routed(
  options: BrowserContextOptions | undefined,
  route: EgressRoute | undefined,
): BrowserContextOptions | undefined {
  if (!route) return options;
  return {
    ...options,
    // Chromium resolves no name but the egress proxy's (egressArgs); Playwright answers its 407.
    proxy: {
      server: `http://${EGRESS_PROXY_HOST}:${route.port}`,
      username: route.username,
      password: route.password,
    },
  };
}
