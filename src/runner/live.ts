import WebSocket from 'ws';
import type { Logger } from '../core/log.js';
import { encodeLiveFrame, livePath, LIVE_MAX_FRAME_BYTES } from '../protocol/live.js';
import { RELAY_LEASE_HEADER, webSocketUrl } from '../protocol/relay.js';
import type { LiveSource } from './types.js';

/**
 * The runner's side of live view: when a heartbeat's answer names sessions somebody watches
 * (`live: [id]`), the runner dials `GET /v1/runners/:id/sessions/:sid/live` for each one it runs
 * (outbound, runner token and the claim's lease token) and sends the page's frames there. The API closes
 * the socket when the last viewer leaves, which stops the screencast; the session's end closes it too.
 * A slow socket drops frames rather than queueing them (the next frame replaces what was missed).
 */

/** Frames are dropped while this much is still unsent on the socket. */
const MAX_BUFFERED_BYTES = 2 * 1024 * 1024;

export interface LiveStreamsDeps {
  apiBaseUrl: string;
  runnerToken?: string | undefined;
  runnerId: string;
  log: Logger;
  /** The session's page to show, if this runner executes that attempt of it. */
  liveOf(id: string, leaseToken: string): { source: LiveSource | undefined } | undefined;
}

interface Stream {
  leaseToken: string;
  ws: WebSocket;
  stop: Promise<(() => Promise<void>) | undefined>;
}

export class LiveStreams {
  private readonly streams = new Map<string, Stream>();

  constructor(private readonly deps: LiveStreamsDeps) {}

  /** Sessions being shown now. */
  get size(): number {
    return this.streams.size;
  }

  /** The heartbeat's answer: these sessions (of the leases it named) have viewers. */
  want(ids: readonly string[], leases: ReadonlyMap<string, string>): void {
    for (const id of ids) {
      const leaseToken = leases.get(id);
      if (leaseToken === undefined || this.streams.has(id)) continue;
      const live = this.deps.liveOf(id, leaseToken);
      if (live) this.open(id, leaseToken, live.source);
    }
  }

  /** The session's execution ended: its view ends too. */
  ended(id: string): void {
    this.streams.get(id)?.ws.close(1000, 'session ended');
  }

  closeAll(): void {
    for (const s of this.streams.values()) s.ws.close(1001, 'runner stopping');
  }

  private open(id: string, leaseToken: string, source: LiveSource | undefined): void {
    const { deps } = this;
    const ws = new WebSocket(webSocketUrl(deps.apiBaseUrl, livePath(deps.runnerId, id)), {
      maxPayload: 64 * 1024,
      perMessageDeflate: false,
      headers: {
        ...(deps.runnerToken ? { authorization: `Bearer ${deps.runnerToken}` } : {}),
        [RELAY_LEASE_HEADER]: leaseToken,
      },
    });
    let resolveStop!: (s: (() => Promise<void>) | undefined) => void;
    const stream: Stream = { leaseToken, ws, stop: new Promise((r) => (resolveStop = r)) };
    this.streams.set(id, stream);
    const log = deps.log.child({ sessionId: id });
    ws.once('unexpected-response', (_req, res) => {
      log.debug({ status: res.statusCode }, 'live view refused by the API');
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => {
      if (!source) {
        // Asked again by the next heartbeat, when the session may have one.
        ws.send(JSON.stringify({ event: 'no-page', message: 'the session has no page (yet)' }));
        ws.close(1000, 'no page');
        return;
      }
      log.info('live view: streaming the page');
      source
        .start({
          frame: (f) => {
            if (ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > MAX_BUFFERED_BYTES) return;
            const data = encodeLiveFrame(f.meta, f.jpeg);
            if (data.length <= LIVE_MAX_FRAME_BYTES) ws.send(data, { binary: true });
          },
          notice: (n) => {
            if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(n));
          },
        })
        .then(
          (stop) => {
            // Closed while the screencast started: stop it at once.
            if (ws.readyState === WebSocket.OPEN) resolveStop(stop);
            else void stop().catch(() => undefined);
          },
          (err: unknown) => {
            log.debug({ err: (err as Error).message }, 'live view: the page could not be watched');
            if (ws.readyState === WebSocket.OPEN) {
              ws.send(JSON.stringify({ event: 'no-page', message: 'the page could not be watched' }));
              ws.close(1000, 'no page');
            }
          },
        );
    });
    ws.on('error', () => resolveStop(undefined));
    ws.once('close', () => {
      resolveStop(undefined);
      if (this.streams.get(id) === stream) this.streams.delete(id);
      void stream.stop.then((stop) => stop?.()).catch(() => undefined);
    });
  }
}
