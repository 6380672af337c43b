import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../store/db.js';
import type { Notifier } from '../store/notify.js';
import { announceToReplicas } from '../store/replicas.js';

/**
 * Which API replica holds which session's socket: live viewers (`live`) and remote-browser clients
 * (`relay`). Each replica says what it holds on `sfw_replicas` when it changes and again every few
 * seconds (so a replica that starts later, or missed a word, learns it), with the address the others
 * reach it at (API_INTERNAL_URL); a word not repeated for EXPIRE_MS is forgotten. Runners dial whichever
 * replica their load balancer picks: that one looks here to pass their socket to the replica that holds
 * the other end. Without API_INTERNAL_URL a replica is known to hold a socket but cannot be reached.
 */

export type HoldKind = 'live' | 'relay';

const KINDS: readonly HoldKind[] = ['live', 'relay'];
const ANNOUNCE_MS = 5000;
const EXPIRE_MS = 3 * ANNOUNCE_MS;
/** At most this many session ids in one NOTIFY (36 characters each, under its 8000 bytes). */
const IDS_PER_MESSAGE = 150;

interface Announcement {
  r: string;
  u: string | null;
  k: HoldKind;
  on: boolean;
  s: string[];
}

export interface Holder {
  replica: string;
  url: string | null;
}

export interface ReplicaDirectoryOptions {
  db: Db;
  notifier: Notifier | undefined;
  log: FastifyBaseLogger;
  /** Where other replicas reach this one (API_INTERNAL_URL). */
  internalUrl: string | undefined;
}

export class ReplicaDirectory {
  readonly replicaId = randomUUID();
  private readonly held: Record<HoldKind, Set<string>> = { live: new Set(), relay: new Set() };
  /** What other replicas hold: `kind:id` → replica → (its address, until when). */
  private readonly remote = new Map<string, Map<string, { url: string | null; until: number }>>();
  private readonly heldElsewhere: ((kind: HoldKind, id: string, h: Holder) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: ReplicaDirectoryOptions) {}

  get internalUrl(): string | undefined {
    return this.opts.internalUrl;
  }

  start(): void {
    this.opts.notifier?.on('replicas', this.onAnnouncement);
    this.opts.notifier?.on('reconnected', this.announceAll);
    this.timer = setInterval(() => void this.tick(), ANNOUNCE_MS);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.opts.notifier?.off('replicas', this.onAnnouncement);
    this.opts.notifier?.off('reconnected', this.announceAll);
  }

  /** This replica holds the session's socket of this kind: the others are told now. */
  hold(kind: HoldKind, id: string): void {
    if (this.held[kind].has(id)) return;
    this.held[kind].add(id);
    void this.announce(kind, [id], true);
  }

  release(kind: HoldKind, id: string): void {
    if (!this.held[kind].delete(id)) return;
    void this.announce(kind, [id], false);
  }

  /** Called when another replica says it holds a session's socket (first word or repeat). */
  onHeldElsewhere(fn: (kind: HoldKind, id: string, h: Holder) => void): void {
    this.heldElsewhere.push(fn);
  }

  /** The other replicas that hold the session's socket of this kind. */
  elsewhere(kind: HoldKind, id: string): Holder[] {
    const m = this.remote.get(`${kind}:${id}`);
    if (!m) return [];
    const now = Date.now();
    const out: Holder[] = [];
    for (const [replica, e] of m) if (e.until > now) out.push({ replica, url: e.url });
    return out;
  }

  /** Those of them this replica can reach (they gave an address, and it is not this replica's). */
  reachable(kind: HoldKind, id: string): { replica: string; url: string }[] {
    return this.elsewhere(kind, id).flatMap((h) =>
      h.url !== null && h.url !== this.opts.internalUrl ? [{ replica: h.replica, url: h.url }] : [],
    );
  }

  private readonly onAnnouncement = (payload: string): void => {
    let a: Partial<Announcement>;
    try {
      a = JSON.parse(payload) as Partial<Announcement>;
    } catch {
      return;
    }
    if (typeof a.r !== 'string' || a.r === this.replicaId || !Array.isArray(a.s)) return;
    if (!a.k || !KINDS.includes(a.k)) return;
    const url = typeof a.u === 'string' ? a.u : null;
    for (const id of a.s) {
      if (typeof id !== 'string') continue;
      const key = `${a.k}:${id}`;
      if (a.on) {
        let m = this.remote.get(key);
        if (!m) this.remote.set(key, (m = new Map<string, { url: string | null; until: number }>()));
        m.set(a.r, { url, until: Date.now() + EXPIRE_MS });
        for (const fn of this.heldElsewhere) fn(a.k, id, { replica: a.r, url });
      } else {
        const m = this.remote.get(key);
        m?.delete(a.r);
        if (m?.size === 0) this.remote.delete(key);
      }
    }
  };

  private readonly announceAll = (): void => {
    for (const kind of KINDS) void this.announce(kind, [...this.held[kind]], true);
  };

  private async tick(): Promise<void> {
    const now = Date.now();
    for (const [key, m] of this.remote) {
      for (const [r, e] of m) if (e.until <= now) m.delete(r);
      if (m.size === 0) this.remote.delete(key);
    }
    this.announceAll();
  }

  private async announce(kind: HoldKind, ids: string[], on: boolean): Promise<void> {
    if (this.closed || ids.length === 0) return;
    for (let i = 0; i < ids.length; i += IDS_PER_MESSAGE) {
      const a: Announcement = {
        r: this.replicaId,
        u: this.opts.internalUrl ?? null,
        k: kind,
        on,
        s: ids.slice(i, i + IDS_PER_MESSAGE),
      };
      try {
        await announceToReplicas(this.opts.db, JSON.stringify(a));
      } catch (err) {
        this.opts.log.debug({ err: (err as Error).message }, 'could not tell the other API replicas');
      }
    }
  }
}
