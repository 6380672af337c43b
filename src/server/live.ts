import type { FastifyBaseLogger } from 'fastify';
import type { LiveState } from '@session-framework/sdk';
import WebSocket from 'ws';
import { isTerminal } from '../core/types.js';
import { decodeLiveFrame, livePath, type LiveFrameMeta, type LiveNotice } from '../protocol/live.js';
import { webSocketUrl } from '../protocol/relay.js';
import type { Db } from '../store/db.js';
import type { Notifier } from '../store/notify.js';
import { findSessions } from '../store/sessions.js';
import type { ReplicaDirectory } from './replicas.js';
import { FORWARDED_HEADER } from './forward.js';

/**
 * Live view, the API's side. Viewers (`GET /v1/sessions/:id/live`) wait here; the replica tells the
 * others which sessions its viewers watch (ReplicaDirectory, kind `live`), every replica's heartbeat
 * answers name those sessions to the runners holding them, and
 * a runner dials its live socket for each. Whichever replica that socket lands on passes the frames to
 * its own viewers and, when API_INTERNAL_URL is set, on to every other replica that has viewers of the
 * session (a forwarded socket, checked there as the runner's own). When the last viewer of a session
 * leaves everywhere, its runner's socket is closed: the runner stops the screencast.
 */

export type { LiveState };

export interface LiveViewer {
  frame(meta: LiveFrameMeta, jpeg: Buffer): void;
  state(state: LiveState, message: string): void;
  /** The view is over (the session ended, or the API is stopping): the viewer's response ends. */
  end(message: string): void;
}

/** How often viewers of an ended session are looked for, in case its notification was lost. */
const SWEEP_MS = 5000;

/** Who sent a direct live socket, to forward it as them. */
export interface RunnerSide {
  runnerId: string;
  headers: Record<string, string>;
}

export interface LiveHubOptions {
  db: Db;
  notifier: Notifier | undefined;
  log: FastifyBaseLogger;
  replicas: ReplicaDirectory;
}

const WAITING = "waiting for the session's runner: it hears of viewers with its next heartbeat";

export class LiveHub {
  private readonly viewers = new Map<string, Set<LiveViewer>>();
  private readonly last = new Map<string, { meta: LiveFrameMeta; jpeg: Buffer }>();
  private readonly lastState = new Map<string, { state: LiveState; message: string }>();
  /** Runner sockets (direct, or forwarded by another replica) that feed this replica, by session. */
  private readonly sources = new Map<string, Set<WebSocket>>();
  /** Sockets this replica opened to other replicas to pass a session's frames on, by session and replica. */
  private readonly forwards = new Map<string, Map<string, WebSocket>>();
  /** Each direct runner socket's runner and headers (authorization, lease), to forward it as the runner. */
  private readonly runners = new Map<string, RunnerSide>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: LiveHubOptions) {}

  start(): void {
    this.opts.notifier?.on('done', this.onDone);
    // Another replica's viewers of a session whose runner's socket is here: pass its frames there too.
    this.opts.replicas.onHeldElsewhere((kind, id, h) => {
      if (
        kind === 'live' &&
        h.url !== null &&
        h.url !== this.opts.replicas.internalUrl &&
        this.runners.has(id)
      )
        this.openForward(id, h.replica, h.url);
    });
    this.timer = setInterval(() => void this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.opts.notifier?.off('done', this.onDone);
    for (const id of [...this.viewers.keys()]) this.end(id, 'the API is stopping');
    for (const set of this.sources.values()) for (const ws of set) ws.close(1001, 'the API is stopping');
    for (const m of this.forwards.values())
      for (const ws of m.values()) ws.close(1001, 'the API is stopping');
  }

  /** Viewers on this replica, runner sockets feeding it, and sockets it passes frames on to other replicas. */
  counts(): { viewers: number; sources: number; forwards: number } {
    let viewers = 0;
    let sources = 0;
    let forwards = 0;
    for (const v of this.viewers.values()) viewers += v.size;
    for (const s of this.sources.values()) sources += s.size;
    for (const f of this.forwards.values()) forwards += f.size;
    return { viewers, sources, forwards };
  }

  /** Runner sockets feeding this replica the session's frames (0: nothing is being captured for it here). */
  sourceCount(sessionId: string): number {
    return this.sources.get(sessionId)?.size ?? 0;
  }

  viewerCount(sessionId: string): number {
    return this.viewers.get(sessionId)?.size ?? 0;
  }

  /** A viewer of a queued or running session; answers the function that removes it. */
  addViewer(sessionId: string, v: LiveViewer): () => void {
    let set = this.viewers.get(sessionId);
    const first = set === undefined;
    if (!set) this.viewers.set(sessionId, (set = new Set()));
    set.add(v);
    if (first) this.opts.replicas.hold('live', sessionId);
    const st = this.lastState.get(sessionId);
    v.state(st?.state ?? 'waiting', st?.message ?? WAITING);
    const frame = this.last.get(sessionId);
    if (frame) v.frame(frame.meta, frame.jpeg);
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      this.removeViewer(sessionId, v);
    };
  }

  private removeViewer(sessionId: string, v: LiveViewer): void {
    const set = this.viewers.get(sessionId);
    if (!set?.delete(v) || set.size > 0) return;
    this.viewers.delete(sessionId);
    this.last.delete(sessionId);
    this.lastState.delete(sessionId);
    this.opts.replicas.release('live', sessionId);
    this.closeSourcesIfUnwanted(sessionId);
  }

  /** Of these sessions, the ones somebody watches on any replica (the heartbeat answer's `live`). */
  watched(ids: readonly string[]): string[] {
    return ids.filter((id) => this.viewers.has(id) || this.opts.replicas.elsewhere('live', id).length > 0);
  }

  /** Whether a runner's socket for the session has anywhere to go from this replica. */
  wanted(sessionId: string, forwarded: boolean): boolean {
    if (this.viewers.has(sessionId)) return true;
    return !forwarded && this.opts.replicas.reachable('live', sessionId).length > 0;
  }

  /**
   * A runner's live socket for the session (its lease checked by the route). `runner` says whose it is
   * (its id and headers: authorization, lease), to forward it to the other replicas that have viewers; a
   * socket that was itself forwarded here has none and goes no further.
   */
  attachSource(sessionId: string, ws: WebSocket, runner: RunnerSide | undefined): void {
    let set = this.sources.get(sessionId);
    if (!set) this.sources.set(sessionId, (set = new Set()));
    set.add(ws);
    if (runner) {
      this.runners.set(sessionId, runner);
      for (const r of this.opts.replicas.reachable('live', sessionId))
        this.openForward(sessionId, r.replica, r.url);
    }
    ws.on('message', (data: Buffer, binary) => {
      for (const f of this.forwards.get(sessionId)?.values() ?? [])
        if (f.readyState === WebSocket.OPEN) f.send(data, { binary });
      const viewers = this.viewers.get(sessionId);
      if (!viewers) return;
      if (binary) {
        const frame = decodeLiveFrame(data);
        if (!frame) return;
        this.last.set(sessionId, frame);
        this.setState(sessionId, 'live', 'the page, live');
        for (const v of viewers) v.frame(frame.meta, frame.jpeg);
        return;
      }
      let n: Partial<LiveNotice>;
      try {
        n = JSON.parse(data.toString('utf8')) as Partial<LiveNotice>;
      } catch {
        return;
      }
      if (n.event === 'no-page')
        this.setState(sessionId, 'no-page', String(n.message ?? 'the session has no page').slice(0, 200));
      else if (n.event === 'page') this.setState(sessionId, 'live', 'the page, live');
    });
    ws.on('close', () => {
      set.delete(ws);
      if (set.size > 0) return;
      this.sources.delete(sessionId);
      this.runners.delete(sessionId);
      for (const f of this.forwards.get(sessionId)?.values() ?? []) f.close(1000, 'the runner stopped');
      if (this.viewers.has(sessionId) && this.lastState.get(sessionId)?.state !== 'no-page')
        this.setState(sessionId, 'waiting', WAITING);
    });
    ws.on('error', () => undefined);
  }

  private setState(sessionId: string, state: LiveState, message: string): void {
    const prev = this.lastState.get(sessionId);
    if (prev?.state === state && prev.message === message) return;
    this.lastState.set(sessionId, { state, message });
    for (const v of this.viewers.get(sessionId) ?? []) v.state(state, message);
  }

  /** The session ended: its viewers' responses end. */
  end(sessionId: string, message: string): void {
    const set = this.viewers.get(sessionId);
    if (!set) return;
    for (const v of [...set]) v.end(message);
  }

  private closeSourcesIfUnwanted(sessionId: string): void {
    if (this.viewers.has(sessionId) || (this.forwards.get(sessionId)?.size ?? 0) > 0) return;
    for (const ws of this.sources.get(sessionId) ?? []) ws.close(1000, 'nobody watches');
  }

  private openForward(sessionId: string, replica: string, url: string): void {
    let m = this.forwards.get(sessionId);
    if (m?.has(replica)) return;
    const runner = this.runners.get(sessionId);
    if (!runner) return;
    if (!m) this.forwards.set(sessionId, (m = new Map<string, WebSocket>()));
    const ws = new WebSocket(webSocketUrl(url, livePath(runner.runnerId, sessionId)), {
      headers: { ...runner.headers, [FORWARDED_HEADER]: this.opts.replicas.replicaId },
      perMessageDeflate: false,
    });
    m.set(replica, ws);
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      ws.terminate();
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      const fm = this.forwards.get(sessionId);
      if (fm?.get(replica) === ws) fm.delete(replica);
      if (fm?.size === 0) this.forwards.delete(sessionId);
      this.closeSourcesIfUnwanted(sessionId);
    });
  }

  private readonly onDone = (sessionId: string): void => {
    if (this.viewers.has(sessionId)) void this.endIfFinal([sessionId]);
  };

  /** A lost notification must not leave a viewer of an ended session waiting. */
  private async sweep(): Promise<void> {
    const ids = [...this.viewers.keys()];
    if (ids.length > 0) await this.endIfFinal(ids);
  }

  private async endIfFinal(ids: string[]): Promise<void> {
    try {
      for (const row of await findSessions(this.opts.db, ids))
        if (isTerminal(row.status)) this.end(row.id, `the session ${row.status}`);
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'live view: could not look at sessions');
    }
  }
}
