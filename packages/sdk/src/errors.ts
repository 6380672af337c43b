/**
 * The one error registry. Every error a user can meet has a code, an HTTP status and whether a retry may
 * help. Expected mistakes carry a message that says what to change, never a stack trace. The API answers
 * these codes and the client reads them back, so the registry lives with the client; the server's own
 * error classes (session-framework's src/core/errors.ts) extend SfwError from here.
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
  /** A webhook delivery whose signature or timestamp does not check out (verifyWebhook); a receiver answers 401. */
  WEBHOOK_SIGNATURE: { status: 401, retryable: false },
  UNAVAILABLE: { status: 503, retryable: true },
  /** A named state encrypted under another STATE_ENCRYPTION_KEY than the API's (or the API has none). */
  STATE_KEY: { status: 500, retryable: false },
  INTERNAL: { status: 500, retryable: true },
  CONFIG: { status: 0, retryable: false },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Wire shape of an error answer. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; path?: string };
}

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

/** The API answered with an error: its HTTP status, code, message and the path of the bad field. */
export class ApiError extends SfwError {
  override readonly name = 'ApiError';
  readonly httpStatus: number;
  constructor(httpStatus: number, code: ErrorCode, message: string, path?: string) {
    super(code, message, path === undefined ? undefined : { path });
    this.httpStatus = httpStatus;
  }
  override get status(): number {
    return this.httpStatus;
  }
  /** A code this client does not know (a newer server) is judged by its status. */
  override get retryable(): boolean {
    return Object.hasOwn(ERROR_CODES, this.code)
      ? ERROR_CODES[this.code].retryable
      : this.httpStatus === 408 || this.httpStatus === 429 || this.httpStatus >= 500;
  }
}

/** The API could not be reached (connection refused, reset, timed out). */
export class NetworkError extends SfwError {
  override readonly name = 'NetworkError';
  /** Whether the request may have reached the API (false: it surely did not). */
  readonly sent: boolean;
  constructor(message: string, sent: boolean, cause: unknown) {
    super('UNAVAILABLE', message, { cause });
    this.sent = sent;
  }
}
