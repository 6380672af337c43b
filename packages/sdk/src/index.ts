/** Public API of `@session-framework/sdk`: the typed client of the Session Framework HTTP API. */
export { SfwClient, type ClientOptions, type ListSessionsOptions, type SessionListItem } from './client.js';
export { ApiError, ERROR_CODES, NetworkError, SfwError, type ErrorBody, type ErrorCode } from './errors.js';
export { backoff, sleep } from './retry.js';
export * from './wire.js';
export type * from './flow.js';
export * from './webhooks.js';
export type * from './states.js';
export type * from './limits.js';
export type * from './retention.js';
export * from './batches.js';
