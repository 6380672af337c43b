import type { LiveFrameMeta } from '@session-framework/sdk';

/**
 * Live view's wire (docs/remote.md, "Live view"). A viewer asks `GET /v1/sessions/:id/live`; the API tells
 * the runner holding the session in its next heartbeat answer (`live: [sessionId]`); the runner dials
 * `GET /v1/runners/:runnerId/sessions/:sessionId/live` (outbound, runner token and lease token, as the
 * relay) and sends the page's screencast frames there until the API closes the socket (nobody watches
 * any more) or the session ends. Nothing is captured while nobody watches.
 */

/** The largest frame message the API takes from a runner. */
export const LIVE_MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** Viewers of one session on one API replica; more are answered 429. */
export const LIVE_MAX_VIEWERS = 20;

/** A frame's header: what the page was when it was painted (the same shape as src/browser/live.ts's). */
export type { LiveFrameMeta };

/**
 * What a runner says besides frames, as a text message: the session has no page to show (a code session
 * without a browser, or one whose pages are all closed), or a page again.
 */
export interface LiveNotice {
  event: 'no-page' | 'page';
  message?: string;
}

/** A frame on the runner's socket: a 4-byte big-endian header length, the JSON header, the JPEG bytes. */
export function encodeLiveFrame(meta: LiveFrameMeta, jpeg: Buffer): Buffer {
  const header = Buffer.from(JSON.stringify(meta));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  return Buffer.concat([len, header, jpeg]);
}

/** The frame in a runner's binary message; undefined when it is not one. */
export function decodeLiveFrame(data: Buffer): { meta: LiveFrameMeta; jpeg: Buffer } | undefined {
  if (data.length < 4) return undefined;
  const n = data.readUInt32BE(0);
  if (n === 0 || n > 4096 || data.length < 4 + n) return undefined;
  let meta: unknown;
  try {
    meta = JSON.parse(data.subarray(4, 4 + n).toString('utf8'));
  } catch {
    return undefined;
  }
  const m = meta as Partial<LiveFrameMeta> | null;
  if (!m || typeof m.ts !== 'number' || typeof m.width !== 'number' || typeof m.height !== 'number')
    return undefined;
  const jpeg = data.subarray(4 + n);
  // A JPEG starts with its SOI marker: anything else is not shown to viewers.
  if (jpeg.length < 3 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return undefined;
  return {
    meta: {
      ts: m.ts,
      width: m.width,
      height: m.height,
      ...(typeof m.url === 'string' ? { url: m.url.slice(0, 2000) } : {}),
    },
    jpeg,
  };
}

export function livePath(runnerId: string, sessionId: string): string {
  return `/v1/runners/${encodeURIComponent(runnerId)}/sessions/${encodeURIComponent(sessionId)}/live`;
}
