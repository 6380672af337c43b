/**
 * The one error registry. Every error a user can meet has a code, an HTTP status and whether a retry may
 * help. Expected mistakes carry a message that says what to change, never a stack trace.
 */
export const ERROR_CODES = {
  VALIDATION: { status: 400, retryable: false },
  BAD_JSON: { status: 400, retryable: false },
  /** Malformed HTTP: a URL that does not decode, a request line or header Node cannot parse. */
  BAD_REQUEST: { status: 400, retryable: false },
  UNAUTHORIZED: { status: 401, retryable: false },
  FORBIDDEN: { status: 403, retryable: false },
  /** A state-changing request sent by another site's page (CSRF): refused whatever its token. */
  CROSS_SITE: { status: 403, retryable: false },
  NOT_FOUND: { status: 404, retryable: false },
  METHOD_NOT_ALLOWED: { status: 405, retryable: false },
  REQUEST_TIMEOUT: { status: 408, retryable: true },
  LEASE_LOST: { status: 409, retryable: false },
  CONFLICT: { status: 409, retryable: false },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false },
  URI_TOO_LONG: { status: 414, retryable: false },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false },
  /** The Host header names no host this API serves (DNS rebinding): see ALLOWED_HOSTS. */
  HOST_NOT_ALLOWED: { status: 421, retryable: false },
  RATE_LIMITED: { status: 429, retryable: true },
  HEADERS_TOO_LARGE: { status: 431, retryable: false },
  UNAVAILABLE: { status: 503, retryable: true },
  INTERNAL: { status: 500, retryable: true },
  CONFIG: { status: 0, retryable: false },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SfwError extends Error {
  override readonly name: string = 'SfwError';
  readonly code: ErrorCode;
  /** Path of the bad field, e.g. `body.input.steps.2.selector`, for validation errors. */
  readonly path: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { path?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.path = options?.path;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }
}

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

/** Wire shape of an error answer. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; path?: string };
}
