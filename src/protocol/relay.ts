/**
 * The remote-browser relay's wire: `GET /v1/browser` (a client's Playwright connection) and the runner's
 * outbound `GET /v1/runners/:runnerId/sessions/:sessionId/relay`, both WebSockets whose messages the API
 * passes on unchanged (docs/remote.md).
 */

/** The session type of a remote Playwright connection. */
export const REMOTE_BROWSER_TYPE = 'browser';

/** The runner's lease token on its relay request (fencing, as on every runner write). */
export const RELAY_LEASE_HEADER = 'x-lease-token';

/** The largest message either side may send (Playwright's screenshots travel base64 inside one). */
export const RELAY_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** A connection with no message either way for this long is closed. */
export const RELAY_IDLE_TIMEOUT_MS = 5 * 60_000;

/** Messages a client may send before its session is running (Playwright sends one: initialize). */
export const RELAY_MAX_QUEUED_MESSAGES = 100;

/** Close code the API sends the runner when the client closed normally: the session succeeded. */
export const RELAY_CLIENT_CLOSED = 4000;
/** Close code the API sends the runner when the client dropped or sat idle: the session failed. */
export const RELAY_CLIENT_LOST = 4001;

/** `ws(s)://…` for a path of the API at `baseUrl` (http(s)://, which may have a path prefix of its own). */
export function webSocketUrl(baseUrl: string, path: string): string {
  const u = new URL(baseUrl);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = `${u.pathname.replace(/\/$/, '')}${path}`;
  return u.toString();
}

export function relayPath(runnerId: string, sessionId: string): string {
  return `/v1/runners/${encodeURIComponent(runnerId)}/sessions/${encodeURIComponent(sessionId)}/relay`;
}

/** What a `browser` session's result records (the SDK's wire type). */
export type { RemoteBrowserResult } from '@session-framework/sdk';
