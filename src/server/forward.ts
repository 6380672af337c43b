import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { type WebSocketServer } from 'ws';
import { ERROR_CODES, SfwError, type ErrorCode } from '../core/errors.js';

/**
 * A runner's WebSocket passed on to the API replica that holds the other end (src/server/replicas.ts):
 * this replica dials the holder with the runner's own credentials first, and upgrades the runner only
 * once the holder has accepted, so the holder's refusal (a lost lease, a client gone) reaches the runner
 * as its own answer. Then every message goes on unchanged either way, and a close goes on with its code
 * (one that cannot be sent, as when a side drops without a word, drops the other side too).
 */

/** The header a forwarded socket carries (the forwarding replica's id): it is never forwarded again. */
export const FORWARDED_HEADER = 'x-sfw-forwarded';

const sendable = (code: number) =>
  (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
  (code >= 3000 && code <= 4999);

/** Passes `a`'s messages and close to `b` and back. */
export function pipeSockets(a: WebSocket, b: WebSocket): void {
  const pass = (from: WebSocket, to: WebSocket) => {
    from.on('message', (data: Buffer, binary) => {
      if (to.readyState === WebSocket.OPEN) to.send(data, { binary });
    });
    from.on('close', (code, reason) => {
      if (to.readyState !== WebSocket.OPEN && to.readyState !== WebSocket.CONNECTING) return;
      if (sendable(code)) to.close(code, reason.toString().slice(0, 120));
      else to.terminate();
    });
    from.on('error', () => undefined);
  };
  pass(a, b);
  pass(b, a);
}

export interface ForwardOptions {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  wss: WebSocketServer;
  /** The holder's ws(s):// URL of the same route. */
  target: string;
  /** The runner's headers to pass (authorization, lease), plus this replica's mark. */
  headers: Record<string, string>;
  maxPayload: number;
}

/** Settles once the runner is upgraded and piped to the holder; rejects with the holder's refusal. */
export function forwardUpgrade(o: ForwardOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = new WebSocket(o.target, {
      headers: o.headers,
      maxPayload: o.maxPayload,
      perMessageDeflate: false,
    });
    const early: { data: Buffer; binary: boolean }[] = [];
    const buffer = (data: Buffer, binary: boolean) => early.push({ data, binary });
    out.on('message', buffer);
    out.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body = (body + c).slice(0, 4000)));
      res.on('end', () => {
        let code: ErrorCode = 'UNAVAILABLE';
        let message = `the API replica holding the other end answered ${res.statusCode}`;
        try {
          const e = (JSON.parse(body) as { error?: { code?: string; message?: string } }).error;
          if (e?.code && e.code in ERROR_CODES) code = e.code as ErrorCode;
          if (e?.message) message = e.message;
        } catch {
          // not the API's error shape: the status says it
        }
        reject(new SfwError(code, message));
      });
      out.terminate();
    });
    out.once('error', (err) =>
      reject(
        new SfwError(
          'UNAVAILABLE',
          `the API replica holding the other end cannot be reached: ${err.message}`,
        ),
      ),
    );
    out.once('open', () => {
      o.wss.handleUpgrade(o.req, o.socket, o.head, (ws) => {
        out.off('message', buffer);
        pipeSockets(out, ws);
        for (const m of early) ws.send(m.data, { binary: m.binary });
        resolve();
      });
    });
  });
}
