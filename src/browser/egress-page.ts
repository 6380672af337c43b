import type { Browser, BrowserContext, Page, Request, Response } from 'playwright-core';
import { SfwError } from '../core/errors.js';
import { EGRESS_ERROR_HEADER, EGRESS_REFUSED_HEADER, urlHostPort, type EgressProxy } from './egress.js';

/**
 * What a page's own error says when the egress proxy stopped its navigation. Chromium reports a refused
 * or failed CONNECT only as net::ERR_TUNNEL_CONNECTION_FAILED and shows a refused http request as the
 * proxy's 403 page; the proxy that served the page's browser knows why.
 */

const proxies = new WeakMap<Browser, EgressProxy>();
const routes = new WeakMap<BrowserContext, string>();

/** Records that `browser` sends its connections through `proxy` (the pool does, at launch). */
export function attachEgress(browser: Browser, proxy: EgressProxy): void {
  proxies.set(browser, proxy);
}

/** Records that `context` reaches the egress proxy by the route `routeId` (its own upstream proxy). */
export function attachRoute(context: BrowserContext, routeId: string): void {
  routes.set(context, routeId);
}

export interface NavigationFailures {
  /** Rejects with the next navigation failure; at once with a pending one, which it takes. */
  next(): Promise<never>;
  /** The pending navigation failure, if any, which it takes. */
  take(): Error | undefined;
  dispose(): void;
}

/** Watches the main frame of `page` for navigations (redirects included) the egress proxy stopped. */
export function watchNavigationFailures(page: Page): NavigationFailures {
  const browser = page.context().browser();
  const proxy = browser ? proxies.get(browser) : undefined;
  const routeId = routes.get(page.context());
  const mainNavigation = (r: Request): boolean => {
    try {
      return r.isNavigationRequest() && r.frame() === page.mainFrame();
    } catch {
      return false; // a service worker's request has no frame
    }
  };
  const explain = (url: string, fallback: string | undefined): Error | undefined => {
    const target = urlHostPort(url);
    const failure = target && proxy?.recentFailure(target.host, target.port, routeId);
    if (failure?.refused) return new SfwError('FORBIDDEN', `navigation to ${url} refused: ${failure.reason}`);
    if (failure) return new SfwError('UNAVAILABLE', `navigation to ${url} failed: ${failure.reason}`);
    return fallback === undefined ? undefined : new Error(`navigation to ${url} failed: ${fallback}`);
  };
  let pending: Error | undefined;
  let waiter: ((err: Error) => void) | undefined;
  const failed = (err: Error | undefined) => {
    if (!err) return;
    pending = err;
    waiter?.(err);
    waiter = undefined;
  };
  const onFailed = (r: Request) => {
    if (!proxy || !mainNavigation(r) || r.failure()?.errorText !== 'net::ERR_TUNNEL_CONNECTION_FAILED')
      return;
    failed(explain(r.url(), "the runner's egress proxy refused or could not reach it"));
  };
  const onResponse = (r: Response) => {
    if (!proxy || !mainNavigation(r.request())) return;
    const headers = r.headers();
    // Only the proxy's own record counts: a page could send these headers itself.
    if (headers[EGRESS_REFUSED_HEADER] !== undefined || headers[EGRESS_ERROR_HEADER] !== undefined)
      failed(explain(r.url(), undefined));
  };
  page.on('requestfailed', onFailed);
  page.on('response', onResponse);
  const take = () => {
    const e = pending;
    pending = undefined;
    return e;
  };
  return {
    next() {
      const now = take();
      if (now) return Promise.reject(now);
      return new Promise<never>((_, reject) => (waiter = reject));
    },
    take,
    dispose() {
      waiter = undefined;
      page.off('requestfailed', onFailed);
      page.off('response', onResponse);
    },
  };
}
