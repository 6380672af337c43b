import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ValidationError } from '../../core/errors.js';
import { findUnstorable } from '../../protocol/text.js';
import {
  CreateScheduleBody,
  IdParams,
  ListSchedulesQuery,
  ScheduleList,
  ScheduleView,
  UpdateScheduleBody,
  type ScheduleSessionTemplate,
} from '../../protocol/schemas.js';
import {
  deleteSchedule,
  getSchedule,
  insertSchedule,
  listSchedules,
  recentRuns,
  updateSchedule,
  type ScheduleFields,
  type ScheduleRow,
} from '../../store/schedules.js';
import { canonicalTimeZone, nextFireTime, parseCron } from '../cron.js';
import { scheduleView } from '../views.js';
import { checkNewSession } from './sessions.js';

/** Recent sessions shown with one schedule, and with each schedule of a list. */
const RECENT_ONE = 10;
const RECENT_LIST = 5;

/**
 * A schedule's name and session template, checked as POST /v1/sessions checks a session (and, by the
 * routes, its input against the type's registered schema).
 */
function checkParts(b: { name?: string; session?: ScheduleSessionTemplate }): void {
  if (b.name !== undefined) {
    const bad = findUnstorable(b.name, 'body.name');
    if (bad) throw new ValidationError(bad.path, bad.message);
  }
  if (b.session !== undefined) checkNewSession(b.session, 'body.session');
}

/** The fields as stored: time zone named as Intl names it, the next fire time from now when enabled. */
function withNextRun(
  f: Omit<ScheduleFields, 'nextRunAt'>,
  recompute: boolean,
  kept: Date | null,
): ScheduleFields {
  const job = parseCron(f.cron, f.timezone);
  const timezone = canonicalTimeZone(f.timezone);
  if (!f.enabled) return { ...f, timezone, nextRunAt: null };
  return { ...f, timezone, nextRunAt: recompute ? nextFireTime(job, new Date()) : kept };
}

const withWarnings = (warnings: string[]) => (warnings.length > 0 ? { warnings } : {});

const encodeCursor = (name: string) => Buffer.from(name).toString('base64url');
const decodeCursor = (cursor: string) => Buffer.from(cursor, 'base64url').toString();

export async function scheduleRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;

  const view = async (row: ScheduleRow, n: number) =>
    scheduleView(row, (await recentRuns(db, [row.id], n)).get(row.id) ?? []);

  app.post(
    '/v1/schedules',
    { config: { scope: 'client' }, schema: { body: CreateScheduleBody, response: { 201: ScheduleView } } },
    async (req, reply) => {
      const b = req.body;
      checkParts(b);
      const { warnings } = await app.sessionTypes.check([b.session], () => 'body.session');
      const fields = withNextRun(
        {
          name: b.name,
          cron: b.cron,
          timezone: b.timezone ?? 'UTC',
          enabled: b.enabled ?? true,
          session: b.session,
          catchUp: b.catchUp ?? 'latest',
          overlap: b.overlap ?? 'skip',
        },
        true,
        null,
      );
      const row = await insertSchedule(db, fields);
      return reply.status(201).send({ ...scheduleView(row, []), ...withWarnings(warnings) });
    },
  );

  app.get(
    '/v1/schedules',
    {
      config: { scope: 'client' },
      schema: { querystring: ListSchedulesQuery, response: { 200: ScheduleList } },
    },
    async (req) => {
      const page = await listSchedules(db, {
        limit: req.query.limit ?? 100,
        ...(req.query.cursor ? { after: decodeCursor(req.query.cursor) } : {}),
      });
      const recent = await recentRuns(
        db,
        page.rows.map((r) => r.id),
        RECENT_LIST,
      );
      const last = page.rows[page.rows.length - 1];
      return {
        items: page.rows.map((r) => scheduleView(r, recent.get(r.id) ?? [])),
        nextCursor: page.more && last ? encodeCursor(last.name) : null,
      };
    },
  );

  app.get(
    '/v1/schedules/:id',
    { config: { scope: 'client' }, schema: { params: IdParams, response: { 200: ScheduleView } } },
    async (req) => view(await getSchedule(db, req.params.id), RECENT_ONE),
  );

  app.patch(
    '/v1/schedules/:id',
    {
      config: { scope: 'client' },
      schema: { params: IdParams, body: UpdateScheduleBody, response: { 200: ScheduleView } },
    },
    async (req) => {
      const b = req.body;
      checkParts(b);
      const warnings = b.session
        ? (await app.sessionTypes.check([b.session], () => 'body.session')).warnings
        : [];
      const row = await updateSchedule(db, req.params.id, (cur) => {
        const next = {
          name: b.name ?? cur.name,
          cron: b.cron ?? cur.cron,
          timezone: b.timezone ?? cur.timezone,
          enabled: b.enabled ?? cur.enabled,
          session: b.session ?? cur.session,
          catchUp: b.catchUp ?? cur.catch_up,
          overlap: b.overlap ?? cur.overlap,
        };
        // A new expression, zone or an enable counts from now: nothing missed while off is replayed.
        const recompute =
          next.cron !== cur.cron || next.timezone !== cur.timezone || (next.enabled && !cur.enabled);
        return withNextRun(next, recompute, cur.next_run_at);
      });
      return { ...(await view(row, RECENT_ONE)), ...withWarnings(warnings) };
    },
  );

  app.delete(
    '/v1/schedules/:id',
    { config: { scope: 'client' }, schema: { params: IdParams } },
    async (req, reply) => {
      if (!(await deleteSchedule(db, req.params.id))) await getSchedule(db, req.params.id);
      return reply.status(204).send();
    },
  );
}
