import type { EventLog } from '../core/log.js';
import { sleep } from '../core/time.js';
import { isLeaseGone, isPermanentRefusal, retryDelay } from './retry.js';
import type { RetryPolicy, RunnerApi, SessionRef } from './types.js';

/** A session's artifacts go up under its lease, retried through brief outages; they never fail the session. */

const UPLOAD_ATTEMPTS = 8;

export interface Artifact {
  name: string;
  data: Buffer;
  contentType: string;
}

export interface ArtifactUploadDeps {
  client: Pick<RunnerApi, 'uploadArtifact'>;
  retry: RetryPolicy;
  /** A forced stop: no more retries. */
  forced: AbortSignal;
}

/** Uploads one artifact; resolves when stored or given up (never rejects). */
export async function uploadArtifact(
  deps: ArtifactUploadDeps,
  session: SessionRef,
  artifact: Artifact,
  log: EventLog,
): Promise<void> {
  const { name, data, contentType } = artifact;
  for (let attempt = 0; attempt < UPLOAD_ATTEMPTS; attempt++) {
    try {
      await deps.client.uploadArtifact(session.id, name, session.leaseToken, data, contentType);
      return;
    } catch (err) {
      const msg = (err as Error).message;
      if (isLeaseGone(err)) {
        log.warn({ artifact: name, err: msg }, 'artifact refused: lease lost');
        return;
      }
      if (isPermanentRefusal(err) || attempt === UPLOAD_ATTEMPTS - 1) {
        log.error({ artifact: name, bytes: data.length, err: msg }, 'artifact not uploaded');
        return;
      }
      await sleep(retryDelay(attempt, deps.retry), deps.forced);
      if (deps.forced.aborted) return;
    }
  }
}
