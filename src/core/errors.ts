import { SfwError } from '@session-framework/sdk';

/** The one error registry (codes, statuses, SfwError) is the SDK's: the API answers what its client reads. */
export { ERROR_CODES, SfwError, type ErrorBody, type ErrorCode } from '@session-framework/sdk';

export class ValidationError extends SfwError {
  override readonly name = 'ValidationError';
  constructor(path: string, message: string) {
    super('VALIDATION', `${path}: ${message}`, { path });
  }
}

export class NotFoundError extends SfwError {
  override readonly name = 'NotFoundError';
  constructor(what: string) {
    super('NOT_FOUND', `${what} not found`);
  }
}

/** The session's lease moved on (recovered, re-claimed or finished): the write was refused. */
export class LeaseLostError extends SfwError {
  override readonly name = 'LeaseLostError';
  constructor(sessionId: string) {
    super('LEASE_LOST', `lease lost for session ${sessionId}: it was recovered or finished elsewhere`);
  }
}

/** A completion repeated under the same lease token with a different outcome: the first one stands. */
export class CompletionConflictError extends SfwError {
  override readonly name = 'CompletionConflictError';
  constructor(sessionId: string) {
    super(
      'CONFLICT',
      `session ${sessionId} was already completed under this lease with a different outcome; the first one stands`,
    );
  }
}

/** Bad configuration: the message names the flag or variable to fix. */
export class ConfigError extends SfwError {
  override readonly name = 'ConfigError';
  constructor(message: string) {
    super('CONFIG', message);
  }
}
