import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TagView as TagViewType } from '@session-framework/sdk';
import { SfwError, ValidationError } from '../../core/errors.js';
import { SESSION_STATUSES, isTerminal, type SessionStatus } from '../../core/types.js';
import {
  CancelSessionsBody,
  CancelSessionsReply,
  ExportSessionsQuery,
  TagParams,
  TagView,
} from '../../protocol/schemas.js';
import { cancelMatching, exportSessions, tagCounts, type TagCountRow } from '../../store/batches.js';
import { EXPORT_CONTENT_TYPES, exportText } from '../export-format.js';

/** Batches (docs/operations.md, "Batches"): a tag's counts, the streamed export, the bulk cancel. */

/** How many rows each FETCH of an export reads: the most it holds in memory at once. */
const EXPORT_CHUNK_ROWS = 500;
/**
 * Exports one API replica streams at once. Each holds a pooled connection for as long as its reader reads,
 * so more would starve the pool the rest of the API needs; one more is 429 RATE_LIMITED.
 */
export const EXPORTS_AT_ONCE = 4;

export function tagView(tag: string, rows: TagCountRow[]): TagViewType {
  const byStatus = Object.fromEntries(SESSION_STATUSES.map((s) => [s, 0])) as Record<SessionStatus, number>;
  let total = 0;
  let finished = 0;
  let oldest: Date | null = null;
  let newest: Date | null = null;
  let lastFinished: Date | null = null;
  for (const r of rows) {
    byStatus[r.status] = r.n;
    total += r.n;
    if (isTerminal(r.status)) finished += r.n;
    if (!oldest || r.oldest < oldest) oldest = r.oldest;
    if (!newest || r.newest > newest) newest = r.newest;
    if (r.last_finished && (!lastFinished || r.last_finished > lastFinished)) lastFinished = r.last_finished;
  }
  return {
    tag,
    total,
    byStatus,
    finished,
    done: total > 0 && finished === total,
    oldestCreatedAt: oldest?.toISOString() ?? null,
    newestCreatedAt: newest?.toISOString() ?? null,
    lastFinishedAt: lastFinished?.toISOString() ?? null,
  };
}

export async function batchRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;
  let exporting = 0;

  app.get(
    '/v1/tags/:tag',
    { config: { scope: 'client' }, schema: { params: TagParams, response: { 200: TagView } } },
    async (req) => tagView(req.params.tag, await tagCounts(db, req.params.tag)),
  );

  app.post(
    '/v1/sessions/cancel',
    {
      config: { scope: 'client' },
      schema: { body: CancelSessionsBody, response: { 200: CancelSessionsReply } },
    },
    async (req) => {
      const b = req.body;
      if (b.tag === undefined && b.status === undefined && b.type === undefined && b.ids === undefined)
        throw new ValidationError('body', 'must pick sessions by tag, status, type or ids (at least one)');
      return cancelMatching(db, {
        ...(b.tag === undefined ? {} : { tag: b.tag }),
        ...(b.status === undefined ? {} : { status: b.status }),
        ...(b.type === undefined ? {} : { type: b.type }),
        ...(b.ids === undefined ? {} : { ids: b.ids }),
      });
    },
  );

  app.get(
    '/v1/sessions/export',
    { config: { scope: 'client' }, schema: { querystring: ExportSessionsQuery } },
    async (req, reply) => {
      const q = req.query;
      const format = q.format ?? 'jsonl';
      const since = q.since === undefined ? undefined : new Date(q.since);
      if (since && Number.isNaN(since.getTime()))
        throw new ValidationError('query.since', 'must be a date-time');
      if (exporting >= EXPORTS_AT_ONCE) {
        void reply.header('retry-after', '5');
        throw new SfwError(
          'RATE_LIMITED',
          `${EXPORTS_AT_ONCE} exports are already streaming from this API replica: try again when one ends`,
        );
      }
      exporting++;
      let counted = true;
      const done = () => {
        if (counted) exporting--;
        counted = false;
      };
      const chunks = exportSessions(
        db,
        {
          ...(q.tag === undefined ? {} : { tag: q.tag }),
          ...(q.status === undefined ? {} : { status: q.status }),
          ...(q.type === undefined ? {} : { type: q.type }),
          ...(since === undefined ? {} : { since }),
        },
        EXPORT_CHUNK_ROWS,
      );
      // The first chunk is read before the answer starts, so a database that cannot be reached is a 5xx,
      // not a cut stream. After it, the reader's pace pulls each FETCH (a 64 KiB buffer between them).
      const first = await chunks.next().catch((err: unknown) => {
        done();
        throw err;
      });
      const rest = async function* () {
        if (first.done) return;
        yield first.value;
        yield* chunks;
      };
      const text = exportText(rest(), format);
      // A reader that goes away destroys the stream, which ends the iteration: the cursor is closed and its
      // connection given back.
      const body = Readable.from(text, { objectMode: false, highWaterMark: 64 * 1024 });
      body.once('close', done);
      return reply
        .header('content-type', EXPORT_CONTENT_TYPES[format])
        .header('content-disposition', `attachment; filename="sessions.${format}"`)
        .header('cache-control', 'no-store')
        .send(body);
    },
  );
}
