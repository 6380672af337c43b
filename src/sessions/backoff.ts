import type { Page, Response } from 'playwright-core';
import { BACKOFF_STATUSES, retryAfterMs } from '../protocol/limits.js';

/**
 * Watches a session's page for a site asking to be left alone: a main-frame navigation answered HTTP 429
 * or 503 with a Retry-After header. Answers a function that stops watching.
 */
export function watchBackoff(
  page: Page,
  report: (retryAfterMs: number, info: { status: number; url: string }) => void,
): () => void {
  const onResponse = (r: Response) => {
    if (!BACKOFF_STATUSES.includes(r.status())) return;
    const req = r.request();
    if (!req.isNavigationRequest() || r.frame() !== page.mainFrame()) return;
    const ms = retryAfterMs(r.headers()['retry-after']);
    if (ms !== undefined) report(ms, { status: r.status(), url: r.url() });
  };
  page.on('response', onResponse);
  return () => page.off('response', onResponse);
}
