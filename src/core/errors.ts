/**
 * The one error registry. Every error a user can meet has a code, an HTTP status and whether a retry may
 * help. Expected mistakes carry a message that says what to change, never a stack trace.
 */
export const ERROR_CODES = {
  VALIDATION: { status: 400, retryable: false },
  BAD_JSON: { status: 400, retryable: false },
  UNAUTHORIZED: { status: 401, retryable: false },
  FORBIDDEN: { status: 403, retryable: false },
  NOT_FOUND: { status: 404, retryable: false },
  LEASE_LOST: { status: 409, retryable: false },
  CONFLICT: { status: 409, retryable: false },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false },
  RATE_LIMITED: { status: 429, retryable: true },
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
