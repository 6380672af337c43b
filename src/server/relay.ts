import type { FastifyBaseLogger } from 'fastify';
import type WebSocket from 'ws';
import { RUNNER_LOST_MESSAGE } from '../core/types.js';
import { RELAY_CLIENT_CLOSED, RELAY_CLIENT_LOST, RELAY_MAX_QUEUED_MESSAGES } from '../protocol/relay.js';
import type { Db } from '../store/db.js';
import type { Notifier } from '../store/notify.js';
import type { ReplicaDirectory } from './replicas.js';
import { cancelSession, completeSessions, findSessions } from '../store/sessions.js';
import { isTerminal } from '../core/types.js';

/**
 * The relay between a remote Playwright client (`GET /v1/browser`) and the runner that claimed its
 * session (`…/relay`, dialled by the runner). While the session is queued the client's messages wait here
 * (Playwright sends `initialize` and waits for its answer, so `connect()` resolves only once a runner is
 * attached); then each message is passed on unchanged, either way. The hub lives in one API replica; a
 * runner's relay that lands on another is passed on to this one (routes/browser.ts, forward.ts).
 */

export interface Pending {
  sessionId: string;
  client: WebSocket;
  queued: { data: Buffer; binary: boolean }[];
  runner: { ws: WebSocket; leaseToken: string } | undefined;
  idle: NodeJS.Timeout | undefined;
  ended: boolean;
  idleOut: boolean;
}

/** The relay's bounds (defaults: RELAY_MAX_MESSAGE_BYTES, RELAY_IDLE_TIMEOUT_MS). */
export interface RelayLimits {
  maxMessageBytes?: number;
  idleTimeoutMs?: number;
}

export interface RelayHubOptions {
  db: Db;
  log: FastifyBaseLogger;
  idleTimeoutMs: number;
  /** Told which sessions' clients wait here, so a runner's relay landing on another replica is passed on. */
  replicas?: Pick<ReplicaDirectory, 'hold' | 'release'>;
  /** Sessions ending: a waiting client whose session ended without a runner's relay is told why. */
  notifier?: Notifier | undefined;
}

/** How often waiting clients' sessions are looked at, in case a notification was lost. */
const SWEEP_MS = 5000;

export class RelayHub {
  private readonly sessions = new Map<string, Pending>();

  private readonly timer: NodeJS.Timeout;

  constructor(private readonly opts: RelayHubOptions) {
    opts.notifier?.on('done', this.onDone);
    this.timer = setInterval(() => void this.sweep([...this.sessions.keys()]), SWEEP_MS);
    this.timer.unref();
  }

  private readonly onDone = (sessionId: string): void => {
    const p = this.sessions.get(sessionId);
    if (p && !p.runner) void this.sweep([sessionId]);
  };

  /**
   * Clients whose session ended while no runner's relay was attached (its runner could not open the
   * relay, or it was cancelled or recovered): their socket closes with the session's outcome, rather than
   * waiting for their own connect timeout.
   */
  private async sweep(ids: string[]): Promise<void> {
    const waiting = ids.filter((id) => !this.sessions.get(id)?.runner);
    if (waiting.length === 0) return;
    try {
      for (const row of await findSessions(this.opts.db, waiting)) {
        const p = this.sessions.get(row.id);
        if (!p || p.runner || !isTerminal(row.status)) continue;
        const why = `session ${row.status}${row.error_message ? `: ${row.error_message}` : ''}`;
        p.ended = true;
        this.forget(p);
        p.client.close(1011, why.slice(0, 120));
      }
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'remote browser: could not look at sessions');
    }
  }

  /** Clients connected to this replica, running or waiting. */
  get size(): number {
    return this.sessions.size;
  }

  /** Clients here whose session waits for a runner's relay, and those being relayed. */
  counts(): { waiting: number; relayed: number } {
    let relayed = 0;
    for (const p of this.sessions.values()) if (p.runner) relayed++;
    return { waiting: this.sessions.size - relayed, relayed };
  }

  has(sessionId: string): boolean {
    const p = this.sessions.get(sessionId);
    return p !== undefined && p.runner === undefined && !p.ended;
  }

  /**
   * A client's socket, upgraded before its session is enqueued (so a runner that claims it at once finds
   * it here); its messages wait until `bind` names the session and a runner attaches.
   */
  addClient(client: WebSocket): Pending {
    const p: Pending = {
      sessionId: '',
      client,
      queued: [],
      runner: undefined,
      idle: undefined,
      ended: false,
      idleOut: false,
    };
    client.on('message', (data: Buffer, binary) => {
      if (p.runner) {
        this.touch(p);
        p.runner.ws.send(data, { binary });
        return;
      }
      if (p.queued.length >= RELAY_MAX_QUEUED_MESSAGES) {
        client.close(1008, 'too many messages before the session started');
        return;
      }
      p.queued.push({ data, binary });
    });
    client.on('close', (code) => {
      if (p.ended) return;
      p.ended = true;
      this.forget(p);
      if (p.runner) {
        if (code === 1000 || code === 1005) p.runner.ws.close(RELAY_CLIENT_CLOSED, 'client closed');
        else p.runner.ws.close(RELAY_CLIENT_LOST, p.idleOut ? 'idle timeout' : `client lost (${code})`);
        return;
      }
      // Gone while queued: nobody will use the browser.
      if (p.sessionId !== '') this.cancel(p.sessionId);
    });
    client.on('error', () => undefined);
    return p;
  }

  /** The session enqueued for this client. */
  bind(p: Pending, sessionId: string): void {
    p.sessionId = sessionId;
    if (p.ended) this.cancel(sessionId);
    else {
      this.sessions.set(sessionId, p);
      this.opts.replicas?.hold('relay', sessionId);
    }
  }

  private cancel(sessionId: string): void {
    cancelSession(this.opts.db, sessionId).catch((err: unknown) =>
      this.opts.log.warn({ sessionId, err: (err as Error).message }, 'could not cancel a left session'),
    );
  }

  /** The runner's relay socket for a session whose client waits here (its lease checked by the route). */
  attachRunner(sessionId: string, leaseToken: string, ws: WebSocket): void {
    const p = this.sessions.get(sessionId);
    if (!p || p.ended) {
      ws.close(1011, 'the client is gone');
      return;
    }
    p.runner = { ws, leaseToken };
    for (const m of p.queued.splice(0)) ws.send(m.data, { binary: m.binary });
    this.touch(p);
    ws.on('message', (data: Buffer, binary) => {
      this.touch(p);
      p.client.send(data, { binary });
    });
    ws.on('close', (code, reason) => {
      if (p.ended) return;
      p.ended = true;
      this.forget(p);
      if (code === 1000 || code === 1001 || code === 1008) {
        p.client.close(1000, reason.toString().slice(0, 120) || 'session ended');
        return;
      }
      // The runner's side dropped without a word (runner killed, network cut): the session ends error now,
      // fenced by the lease this relay was opened under, and the client's socket closes.
      p.client.close(1011, RUNNER_LOST_MESSAGE);
      completeSessions(this.opts.db, [
        { id: sessionId, leaseToken, status: 'error', errorMessage: RUNNER_LOST_MESSAGE },
      ]).catch((err: unknown) =>
        this.opts.log.warn({ sessionId, err: (err as Error).message }, 'could not end a lost relay'),
      );
    });
    ws.on('error', () => undefined);
  }

  /** Closes every connection (the API is stopping). */
  close(): void {
    clearInterval(this.timer);
    this.opts.notifier?.off('done', this.onDone);
    for (const p of [...this.sessions.values()]) {
      p.runner?.ws.close(1001, 'the API is stopping');
      p.client.close(1001, 'the API is stopping');
    }
  }

  private touch(p: Pending): void {
    clearTimeout(p.idle);
    p.idle = setTimeout(() => {
      p.idleOut = true;
      p.client.close(1008, `idle for ${this.opts.idleTimeoutMs} ms`);
    }, this.opts.idleTimeoutMs);
  }

  private forget(p: Pending): void {
    clearTimeout(p.idle);
    if (this.sessions.delete(p.sessionId)) this.opts.replicas?.release('relay', p.sessionId);
  }
}
