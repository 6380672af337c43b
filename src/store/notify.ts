import { EventEmitter } from 'node:events';
import pg from 'pg';
import { DONE_CHANNEL, SESSIONS_CHANNEL } from './sessions.js';
import { WEBHOOKS_CHANNEL } from './webhooks.js';
import { TYPES_CHANNEL } from './types.js';
import { REPLICAS_CHANNEL } from './replicas.js';

/**
 * One LISTEN connection per API process. Emits `sessions` when work is enqueued, `done` (with the
 * session id, once per session) when a session ends, `webhooks` when deliveries are due and `types` when a
 * runner registered its session types, `replicas` when an API replica says which sessions' sockets it holds. Reconnects with backoff after a database restart; while it is down,
 * waiters fall back on polling, so nothing depends on a notification arriving.
 */
export class Notifier extends EventEmitter {
  private client: pg.Client | null = null;
  private closed = false;
  private retryMs = 250;
  private timer: NodeJS.Timeout | null = null;
  connected = false;

  constructor(private readonly connectionString: string) {
    super();
    this.setMaxListeners(0);
  }

  async start(): Promise<void> {
    await this.connect().catch(() => this.scheduleReconnect());
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.connectionString,
      application_name: 'session-framework-listen',
    });
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    client.on('notification', (msg) => {
      if (msg.channel === SESSIONS_CHANNEL) this.emit('sessions');
      // A completion batch names all its sessions in one message, comma-separated.
      else if (msg.channel === DONE_CHANNEL)
        for (const id of (msg.payload ?? '').split(',')) this.emit('done', id);
      else if (msg.channel === WEBHOOKS_CHANNEL) this.emit('webhooks');
      else if (msg.channel === TYPES_CHANNEL) this.emit('types');
      else if (msg.channel === REPLICAS_CHANNEL) this.emit('replicas', msg.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(
        `LISTEN ${SESSIONS_CHANNEL}; LISTEN ${DONE_CHANNEL}; LISTEN ${WEBHOOKS_CHANNEL}; LISTEN ${TYPES_CHANNEL}; LISTEN ${REPLICAS_CHANNEL}`,
      );
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.connected = true;
    this.retryMs = 250;
    // Work may have arrived while we were not listening.
    this.emit('sessions');
    this.emit('webhooks');
    // A registration may have committed while we were not listening.
    this.emit('types');
    // Other replicas say what they hold again within seconds; this one says it now.
    this.emit('reconnected');
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = null;
    this.connected = false;
    client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect().catch(() => this.scheduleReconnect());
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 5000);
  }

  async stop(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const c = this.client;
    this.client = null;
    this.connected = false;
    if (c) await c.end().catch(() => {});
  }
}
