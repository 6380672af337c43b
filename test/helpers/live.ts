/**
 * A viewer of GET /v1/sessions/:id/live?format=sse over real HTTP: collects its events (states, frames,
 * the end) as they come, so a test can wait for what it expects.
 */

export interface LiveEvent {
  event: string;
  data: {
    state?: string;
    message?: string;
    ts?: number;
    width?: number;
    height?: number;
    url?: string;
    jpeg?: string;
  };
  at: number;
}

export interface LiveWatch {
  status: number;
  contentType: string;
  events: LiveEvent[];
  frames(): LiveEvent[];
  /** Settles when the stream ended (the server closed it) or the viewer left. */
  ended: Promise<void>;
  close(): void;
}

export async function watchLive(apiUrl: string, sessionId: string, token?: string): Promise<LiveWatch> {
  const ac = new AbortController();
  const res = await fetch(`${apiUrl}/v1/sessions/${sessionId}/live?format=sse`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal: ac.signal,
  });
  const events: LiveEvent[] = [];
  const read = async () => {
    if (!res.body || res.status !== 200) return;
    const decoder = new TextDecoder();
    let buf = '';
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data)
          events.push({ event, data: JSON.parse(data) as LiveEvent['data'], at: Date.now() });
      }
    }
  };
  const ended = read().catch(() => undefined);
  return {
    status: res.status,
    contentType: res.headers.get('content-type') ?? '',
    events,
    frames: () => events.filter((e) => e.event === 'frame'),
    ended,
    close: () => ac.abort(),
  };
}
