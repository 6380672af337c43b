import type { EventLog } from '../core/log.js';
import type { RunnerApi, SessionRef } from './types.js';

/**
 * Tells the API that a session's site asked to be left alone (HTTP 429 or 503 with Retry-After on a
 * navigation), so that no runner claims another session of its key before then. Best effort, once per
 * session and status: the session goes on (or fails) on its own either way.
 */

export interface BackoffReportDeps {
  runnerId: string;
  client: Partial<Pick<RunnerApi, 'reportBackoff'>>;
}

export type ReportBackoff = (retryAfterMs: number, info: { status: number; url: string }) => void;

export function backoffReporter(deps: BackoffReportDeps, session: SessionRef, log: EventLog): ReportBackoff {
  const { reportBackoff } = deps.client;
  let longest = -1;
  return (retryAfterMs, info) => {
    if (!reportBackoff || retryAfterMs <= longest) return;
    longest = retryAfterMs;
    reportBackoff
      .call(deps.client, deps.runnerId, session.id, {
        leaseToken: session.leaseToken,
        retryAfterMs: Math.round(retryAfterMs),
        status: info.status,
        url: info.url.slice(0, 2000),
      })
      .then(
        (r) => {
          if (r.key !== null)
            log.info({ key: r.key, status: info.status, until: r.backoffUntil }, 'site asked to back off');
        },
        (err: unknown) =>
          log.warn({ status: info.status, err: (err as Error).message }, 'backoff not reported'),
      );
  };
}
