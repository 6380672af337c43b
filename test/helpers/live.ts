import type { LiveEvent, SfwClient } from '@session-framework/sdk';

/**
 * A viewer of a session's live view through the SDK (SfwClient.watchLive, GET /v1/sessions/:id/live as
 * server-sent events): collects its events as they come, so a test can wait for what it expects.
 */
export interface LiveWatch {
  events: LiveEvent[];
  frames(): Extract<LiveEvent, { type: 'frame' }>[];
  /** Settles when the stream ended (the session did) or the viewer left; `error` says why it failed. */
  ended: Promise<void>;
  error: unknown;
  close(): void;
}

export function watchLive(client: SfwClient, sessionId: string): LiveWatch {
  const ac = new AbortController();
  const w: LiveWatch = {
    events: [],
    frames: () => w.events.filter((e): e is Extract<LiveEvent, { type: 'frame' }> => e.type === 'frame'),
    ended: Promise.resolve(),
    error: undefined,
    close: () => ac.abort(),
  };
  w.ended = (async () => {
    try {
      for await (const e of client.watchLive(sessionId, ac.signal)) w.events.push(e);
    } catch (err) {
      if (!ac.signal.aborted) w.error = err;
    }
  })();
  return w;
}

/** Whether `b` holds a JPEG (its SOI marker) of some size. */
export const isJpeg = (b: Buffer): boolean => b.length > 100 && b[0] === 0xff && b[1] === 0xd8;
