import { SfwError } from '../core/errors.js';
import type { EventLog } from '../core/log.js';
import { sleep } from '../core/time.js';
import type { SessionStateAccess, StateLoad, StateSaveResult } from '../protocol/states.js';
import { isPermanentRefusal, retryDelay } from './retry.js';
import type { RetryPolicy, RunnerApi, SessionRef } from './types.js';

/**
 * A session's named state through the API, under its lease: the state it starts from and the save of its
 * context. Brief outages are retried; a lost lease is the typed outcome `lease-lost`.
 */

const STATE_ATTEMPTS = 6;

export interface StateAccessDeps {
  runnerId: string;
  client: Partial<Pick<RunnerApi, 'getSessionState' | 'saveSessionState'>>;
  retry: RetryPolicy;
  /** A forced stop: no more retries. */
  forced: AbortSignal;
}

const codeOf = (err: unknown) => (err instanceof SfwError ? err.code : undefined);

async function withRetries<T>(deps: StateAccessDeps, call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const code = codeOf(err);
      if (code === 'LEASE_LOST' || code === 'NOT_FOUND' || code === 'STATE_KEY') throw err;
      if (isPermanentRefusal(err) || attempt >= STATE_ATTEMPTS - 1 || deps.forced.aborted) throw err;
      await sleep(retryDelay(attempt, deps.retry), deps.forced);
    }
  }
}

export function sessionStateAccess(
  deps: StateAccessDeps,
  session: SessionRef,
  log: EventLog,
): SessionStateAccess {
  const { getSessionState, saveSessionState } = deps.client;
  return {
    async load(): Promise<StateLoad> {
      if (!getSessionState) throw new Error('this runner’s API client cannot read named states');
      try {
        const r = await withRetries(deps, () =>
          getSessionState.call(deps.client, deps.runnerId, session.id, session.leaseToken),
        );
        log.info({ state: r.name, version: r.version }, 'named state loaded');
        return { outcome: 'found', name: r.name, version: r.version, storageState: r.storageState };
      } catch (err) {
        const code = codeOf(err);
        if (code === 'LEASE_LOST') return { outcome: 'lease-lost' };
        if (code === 'NOT_FOUND') return { outcome: 'missing', message: (err as Error).message };
        throw err;
      }
    },
    async save(storageState, seenVersion): Promise<StateSaveResult> {
      if (!saveSessionState) throw new Error('this runner’s API client cannot save named states');
      try {
        const r = await withRetries(deps, () =>
          saveSessionState.call(deps.client, deps.runnerId, session.id, {
            leaseToken: session.leaseToken,
            storageState,
            ...(seenVersion === undefined ? {} : { seenVersion }),
          }),
        );
        if (r.saved) log.info({ state: r.name, version: r.version }, 'named state saved');
        else log.warn({ state: r.name, keptVersion: r.version }, r.message ?? 'named state not saved');
        return { outcome: r.saved ? 'saved' : 'skipped', save: r };
      } catch (err) {
        if (codeOf(err) === 'LEASE_LOST') {
          log.warn('named state refused: lease lost');
          return { outcome: 'lease-lost' };
        }
        throw err;
      }
    },
  };
}
