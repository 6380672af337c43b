/** The client lives in the package @session-framework/sdk; this path keeps working for older imports. */
export {
  SfwClient,
  ApiError,
  NetworkError,
  backoff,
  sleep,
  type ClientOptions,
  type ListSessionsOptions,
  type SessionListItem,
} from '@session-framework/sdk';
