import type { FastifyBaseLogger } from 'fastify';
import type WebSocket from 'ws';
import { RUNNER_LOST_MESSAGE } from '../core/types.js';
import { RELAY_CLIENT_CLOSED, RELAY_CLIENT_LOST, RELAY_MAX_QUEUED_MESSAGES } from '../protocol/relay.js';
import type { Db } from '../store/db.js';
import { cancelSession, completeSessions } from '../store/sessions.js';

/**
 * The relay between a remote Playwright client (`GET /v1/browser`) and the runner that claimed its
 * session (`…/relay`, dialled by the runner). While the session is queued the client's messages wait here
 * (Playwright sends `initialize` and waits for its answer, so `connect()` resolves only once a runner is
 * attached); then each message is passed on unchanged, either way. The hub lives in one API replica: the
 * runner's relay must reach the replica that holds the client (docs/remote.md).
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
}

export class RelayHub {
  private readonly sessions = new Map<string, Pending>();

  constructor(private readonly opts: RelayHubOptions) {}

  /** Clients connected to this replica, running or waiting. */
  get size(): number {
    return this.sessions.size;
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
    else this.sessions.set(sessionId, p);
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
    this.sessions.delete(p.sessionId);
  }
}
