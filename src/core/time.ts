/**
 * Waiting and backing off, for every room: one definition, owned by the SDK package (which needs them for
 * its own retries and may depend on nothing of ours).
 */
export { backoff, sleep } from '@session-framework/sdk';
