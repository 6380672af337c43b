import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { WebSocketServer } from 'ws';
import { SfwError } from '../../core/errors.js';
import { isTerminal } from '../../core/types.js';
import { LIVE_MAX_FRAME_BYTES, LIVE_MAX_VIEWERS, type LiveFrameMeta } from '../../protocol/live.js';
import { RELAY_LEASE_HEADER } from '../../protocol/relay.js';
import { IdParams } from '../../protocol/schemas.js';
import { getSession } from '../../store/sessions.js';
import { hostPolicy } from '../auth.js';
import { FORWARDED_HEADER } from '../forward.js';
import type { LiveState, LiveViewer } from '../live.js';
import { admitUpgrade, checkRunnerLease } from '../upgrades.js';

/**
 * Live view: `GET /v1/sessions/:id/live` streams a queued or running session's page as the runner sends
 * it, a few frames a second, for as long as the viewer stays (MJPEG by default, `?format=sse` or
 * `Accept: text/event-stream` for JSON events with each frame's size, time and URL). Read-only: nothing
 * from the viewer reaches the page. The runner's side is the WebSocket
 * `GET /v1/runners/:runnerId/sessions/:sessionId/live`, dialled by the runner under the claim's lease.
 */

const LIVE_RE = /^\/v1\/runners\/([^/]+)\/sessions\/([^/]+)\/live$/;
const BOUNDARY = 'sfw-live-frame';
/** A viewer this far behind skips frames until it has caught up. */
const MAX_VIEWER_BACKLOG = 4 * 1024 * 1024;
/** A comment on an idle SSE stream, so proxies keep it open. */
const SSE_KEEPALIVE_MS = 15_000;

const LiveQuery = Type.Object(
  {
    format: Type.Optional(
      Type.Union([Type.Literal('mjpeg'), Type.Literal('sse')], {
        description: 'mjpeg (multipart/x-mixed-replace of JPEG frames) or sse (JSON events); default mjpeg',
      }),
    ),
  },
  { additionalProperties: false },
);

function mjpegViewer(out: PassThrough): LiveViewer {
  return {
    frame(meta, jpeg) {
      if (out.writableLength > MAX_VIEWER_BACKLOG) return;
      out.write(
        `--${BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\nX-Frame-Time: ${meta.ts}\r\n\r\n`,
      );
      out.write(jpeg);
      out.write('\r\n');
    },
    state: () => undefined,
    end() {
      out.end(`--${BOUNDARY}--\r\n`);
    },
  };
}

function sseViewer(out: PassThrough): LiveViewer {
  const event = (name: string, data: unknown) =>
    out.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  return {
    frame(meta: LiveFrameMeta, jpeg) {
      if (out.writableLength > MAX_VIEWER_BACKLOG) return;
      event('frame', { ...meta, jpeg: jpeg.toString('base64') });
    },
    state(state: LiveState, message) {
      event('state', { state, message });
    },
    end(message) {
      event('end', { message });
      out.end();
    },
  };
}

export async function liveRoutes(fastify: FastifyInstance): Promise<void> {
  const { deps } = fastify;
  const hub = fastify.live;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: LIVE_MAX_FRAME_BYTES,
    perMessageDeflate: false,
  });
  const tokens = deps.auth.apiToken !== undefined || deps.auth.runnerToken !== undefined;
  const policy = { auth: deps.auth, hosts: deps.hostPolicy ?? hostPolicy(undefined, tokens) };
  let closing = false;

  fastify.upgrades.add(LIVE_RE, async (req, socket, head, _url, m) => {
    if (closing) throw new SfwError('UNAVAILABLE', 'the API is shutting down: retry shortly');
    admitUpgrade(policy, req, undefined, 'runner');
    const runnerId = decodeURIComponent(m[1]!);
    const sessionId = decodeURIComponent(m[2]!);
    const { lease } = await checkRunnerLease(deps.db, req, runnerId, sessionId);
    const forwarded = typeof req.headers[FORWARDED_HEADER] === 'string';
    if (!hub.wanted(sessionId, forwarded))
      throw new SfwError('NOT_FOUND', `nobody watches session ${sessionId} on this API replica`);
    const authorization = req.headers.authorization;
    wss.handleUpgrade(req, socket, head, (ws) =>
      hub.attachSource(
        sessionId,
        ws,
        forwarded
          ? undefined
          : {
              runnerId,
              // The Host this replica accepted, for the replicas it is forwarded to (ALLOWED_HOSTS).
              headers: {
                ...(req.headers.host ? { host: req.headers.host } : {}),
                ...(authorization ? { authorization } : {}),
                [RELAY_LEASE_HEADER]: lease,
              },
            },
      ),
    );
  });
  fastify.get('/v1/runners/:runnerId/sessions/:sessionId/live', { config: { scope: 'runner' } }, async () => {
    throw new SfwError(
      'BAD_REQUEST',
      "this endpoint takes the runner's WebSocket (docs/remote.md, Live view)",
    );
  });

  fastify
    .withTypeProvider<TypeBoxTypeProvider>()
    .get(
      '/v1/sessions/:id/live',
      { config: { scope: 'client' }, schema: { params: IdParams, querystring: LiveQuery } },
      async (req, reply) => {
        const row = await getSession(deps.db, req.params.id);
        if (isTerminal(row.status))
          throw new SfwError(
            'CONFLICT',
            `session ${row.id} is ${row.status}: only a queued or running session can be watched live`,
          );
        if (hub.viewerCount(row.id) >= LIVE_MAX_VIEWERS)
          throw new SfwError(
            'RATE_LIMITED',
            `session ${row.id} has ${LIVE_MAX_VIEWERS} viewers on this replica`,
          );
        const sse =
          req.query.format === 'sse' ||
          (req.query.format === undefined && /\btext\/event-stream\b/.test(req.headers.accept ?? ''));
        const out = new PassThrough();
        const viewer = sse ? sseViewer(out) : mjpegViewer(out);
        const remove = hub.addViewer(row.id, viewer);
        const keepalive = sse ? setInterval(() => out.write(': keepalive\n\n'), SSE_KEEPALIVE_MS) : undefined;
        const done = () => {
          clearInterval(keepalive);
          remove();
        };
        out.once('finish', done);
        reply.raw.once('close', () => {
          done();
          out.destroy();
        });
        return reply
          .header('cache-control', 'no-store')
          .header('x-accel-buffering', 'no')
          .type(sse ? 'text/event-stream; charset=utf-8' : `multipart/x-mixed-replace; boundary=${BOUNDARY}`)
          .send(out);
      },
    );

  fastify.addHook('preClose', async () => {
    closing = true;
  });
  fastify.addHook('onClose', async () => wss.close());
}
