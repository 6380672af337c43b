import type { CompleteBody } from '../protocol/schemas.js';
import { storableCompletion } from '../protocol/text.js';

/** What a finished session reports: its completion as the API can store it, or the error that replaces it. */

/**
 * A finished session's completion as the API can store it (src/protocol/text.ts): the error message
 * without terminal colour codes and within bounds, and no text Postgres refuses (NUL, half of a UTF-16
 * pair: replaced with U+FFFD, counted in `replaced`), so a result is never lost over a few characters.
 */
export function completionBody(
  leaseToken: string,
  outcome: Pick<CompleteBody, 'status' | 'result' | 'errorMessage'>,
): { body: CompleteBody; replaced: number } {
  const { completion, replaced } = storableCompletion({
    leaseToken,
    status: outcome.status,
    ...(outcome.result === undefined ? {} : { result: outcome.result }),
    ...(outcome.errorMessage === undefined ? {} : { errorMessage: outcome.errorMessage }),
  } satisfies CompleteBody);
  return { body: completion, replaced };
}

/**
 * A result the API refused for good (too large, malformed) is replaced by an `error` outcome naming the
 * refusal, under the same lease, so the session still ends.
 */
export function refusedResultBody(body: CompleteBody, refusal: Error): CompleteBody {
  return {
    leaseToken: body.leaseToken,
    status: 'error',
    errorMessage: `The API refused the session's result: ${refusal.message}`.slice(0, 4000),
  };
}
