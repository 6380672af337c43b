import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { LiveState } from '@session-framework/sdk';
import WebSocket from 'ws';
import { isTerminal } from '../core/types.js';
import { decodeLiveFrame, livePath, type LiveFrameMeta, type LiveNotice } from '../protocol/live.js';
import type { Db } from '../store/db.js';
import { announceLive } from '../store/live.js';
import type { Notifier } from '../store/notify.js';
import { findSessions } from '../store/sessions.js';

/**
 * Live view, the API's side. Viewers (`GET /v1/sessions/:id/live`) wait here; the replica says on
 * `sfw_live` which sessions its viewers watch (again every few seconds, so a replica that starts later
 * learns it too), every replica's heartbeat answers name those sessions to the runners holding them, and
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

/** How often a replica says what its viewers watch; a word not repeated for EXPIRE_MS is forgotten. */
const ANNOUNCE_MS = 5000;
const EXPIRE_MS = 3 * ANNOUNCE_MS;
/** At most this many session ids in one NOTIFY (36 characters each, under its 8000 bytes). */
const IDS_PER_MESSAGE = 150;

/** The header a replica's forwarded live socket carries: the forwarding replica's id. */
export const LIVE_FORWARDED_HEADER = 'x-sfw-live-forwarded';

interface Announcement {
  r: string;
  u: string | null;
  on: boolean;
  s: string[];
}

/** Who sent a direct live socket, to forward it as them. */
export interface RunnerSide {
  runnerId: string;
  headers: Record<string, string>;
}

export interface LiveHubOptions {
  db: Db;
  notifier: Notifier | undefined;
  log: FastifyBaseLogger;
  /** Where other replicas reach this one (API_INTERNAL_URL). */
  internalUrl: string | undefined;
}

const WAITING = "waiting for the session's runner: it hears of viewers with its next heartbeat";

export class LiveHub {
  readonly replicaId = randomUUID();
  private readonly viewers = new Map<string, Set<LiveViewer>>();
  private readonly last = new Map<string, { meta: LiveFrameMeta; jpeg: Buffer }>();
  private readonly lastState = new Map<string, { state: LiveState; message: string }>();
  /** Runner sockets (direct, or forwarded by another replica) that feed this replica, by session. */
  private readonly sources = new Map<string, Set<WebSocket>>();
  /** Sockets this replica opened to other replicas to pass a session's frames on, by session and replica. */
  private readonly forwards = new Map<string, Map<string, WebSocket>>();
  /** What other replicas' viewers watch: session → replica → (its address, until when). */
  private readonly remote = new Map<string, Map<string, { url: string | null; until: number }>>();
  /** Each direct runner socket's runner and headers (authorization, lease), to forward it as the runner. */
  private readonly runners = new Map<string, RunnerSide>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: LiveHubOptions) {}

  start(): void {
    const n = this.opts.notifier;
    n?.on('live', this.onAnnouncement);
    n?.on('reconnected', this.onReconnected);
    n?.on('done', this.onDone);
    this.timer = setInterval(() => void this.tick(), ANNOUNCE_MS);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    const n = this.opts.notifier;
    n?.off('live', this.onAnnouncement);
    n?.off('reconnected', this.onReconnected);
    n?.off('done', this.onDone);
    for (const id of [...this.viewers.keys()]) this.end(id, 'the API is stopping');
    for (const set of this.sources.values()) for (const ws of set) ws.close(1001, 'the API is stopping');
    for (const m of this.forwards.values())
      for (const ws of m.values()) ws.close(1001, 'the API is stopping');
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
    if (first) void this.announce([sessionId], true);
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
    void this.announce([sessionId], false);
    this.closeSourcesIfUnwanted(sessionId);
  }

  /** Of these sessions, the ones somebody watches on any replica (the heartbeat answer's `live`). */
  watched(ids: readonly string[]): string[] {
    return ids.filter((id) => this.viewers.has(id) || this.wantedElsewhere(id).length > 0);
  }

  /** Whether a runner's socket for the session has anywhere to go from this replica. */
  wanted(sessionId: string, forwarded: boolean): boolean {
    if (this.viewers.has(sessionId)) return true;
    return !forwarded && this.reachableElsewhere(sessionId).length > 0;
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
      for (const r of this.reachableElsewhere(sessionId)) this.openForward(sessionId, r.replica, r.url);
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

  private wantedElsewhere(sessionId: string): { replica: string; url: string | null }[] {
    const m = this.remote.get(sessionId);
    if (!m) return [];
    const now = Date.now();
    const out: { replica: string; url: string | null }[] = [];
    for (const [replica, e] of m) if (e.until > now) out.push({ replica, url: e.url });
    return out;
  }

  private reachableElsewhere(sessionId: string): { replica: string; url: string }[] {
    return this.wantedElsewhere(sessionId).flatMap((r) =>
      r.url !== null && r.url !== this.opts.internalUrl ? [{ replica: r.replica, url: r.url }] : [],
    );
  }

  private openForward(sessionId: string, replica: string, url: string): void {
    let m = this.forwards.get(sessionId);
    if (m?.has(replica)) return;
    const runner = this.runners.get(sessionId);
    if (!runner) return;
    if (!m) this.forwards.set(sessionId, (m = new Map<string, WebSocket>()));
    const u = new URL(url);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.pathname = `${u.pathname.replace(/\/$/, '')}${livePath(runner.runnerId, sessionId)}`;
    const ws = new WebSocket(u.toString(), {
      headers: { ...runner.headers, [LIVE_FORWARDED_HEADER]: this.replicaId },
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

  private readonly onAnnouncement = (payload: string): void => {
    let a: Partial<Announcement>;
    try {
      a = JSON.parse(payload) as Partial<Announcement>;
    } catch {
      return;
    }
    if (typeof a.r !== 'string' || a.r === this.replicaId || !Array.isArray(a.s)) return;
    const url = typeof a.u === 'string' ? a.u : null;
    for (const id of a.s) {
      if (typeof id !== 'string') continue;
      if (a.on) {
        let m = this.remote.get(id);
        if (!m) this.remote.set(id, (m = new Map<string, { url: string | null; until: number }>()));
        m.set(a.r, { url, until: Date.now() + EXPIRE_MS });
        // A runner's socket for it is here already: pass its frames on to that replica too.
        if (url !== null && url !== this.opts.internalUrl && this.runners.has(id))
          this.openForward(id, a.r, url);
      } else {
        const m = this.remote.get(id);
        m?.delete(a.r);
        if (m?.size === 0) this.remote.delete(id);
      }
    }
  };

  private readonly onReconnected = (): void => void this.announce([...this.viewers.keys()], true);

  private readonly onDone = (sessionId: string): void => {
    if (this.viewers.has(sessionId)) void this.endIfFinal([sessionId]);
  };

  private async tick(): Promise<void> {
    const now = Date.now();
    for (const [id, m] of this.remote) {
      for (const [r, e] of m) if (e.until <= now) m.delete(r);
      if (m.size === 0) this.remote.delete(id);
    }
    const ids = [...this.viewers.keys()];
    if (ids.length === 0) return;
    await this.announce(ids, true);
    // A lost notification must not leave a viewer of an ended session waiting.
    await this.endIfFinal(ids);
  }

  private async endIfFinal(ids: string[]): Promise<void> {
    try {
      for (const row of await findSessions(this.opts.db, ids))
        if (isTerminal(row.status)) this.end(row.id, `the session ${row.status}`);
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'live view: could not look at sessions');
    }
  }

  private async announce(ids: string[], on: boolean): Promise<void> {
    if (this.closed || ids.length === 0) return;
    for (let i = 0; i < ids.length; i += IDS_PER_MESSAGE) {
      const a: Announcement = {
        r: this.replicaId,
        u: this.opts.internalUrl ?? null,
        on,
        s: ids.slice(i, i + IDS_PER_MESSAGE),
      };
      try {
        await announceLive(this.opts.db, JSON.stringify(a));
      } catch (err) {
        this.opts.log.debug({ err: (err as Error).message }, 'live view: could not tell the other replicas');
      }
    }
  }
}
