import type { SfwClient } from '@session-framework/sdk';
import { ConfigError } from '../../core/errors.js';
import { isUuid } from '../../core/ids.js';
import {
  SCHEDULE_CATCH_UPS,
  SCHEDULE_OVERLAPS,
  type CreateSessionBody,
  type ScheduleCatchUp,
  type ScheduleOverlap,
  type ScheduleSessionTemplate,
  type ScheduleView,
  type UpdateScheduleBody,
} from '../../protocol/schemas.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, str, table, type CommandContext } from '../command.js';
import { parseJsonFlag, readJsonFile } from '../input.js';
import { SESSION_FLAGS, applySessionFlags } from '../session-flags.js';
import { sessionFromFile } from './run.js';

const USAGE =
  'schedules list | get <id|name> | create <name> --cron expr (--flow f.json | --type t) | update | enable | disable | delete <id|name>';
const ACTIONS = ['list', 'get', 'create', 'update', 'enable', 'disable', 'delete'] as const;
type Action = (typeof ACTIONS)[number];

/** The session flags a schedule's template takes: all but --run-at (each fire time is the start). */
const { 'run-at': _runAt, ...TEMPLATE_FLAGS } = SESSION_FLAGS;

function choice<T extends string>(ctx: CommandContext, name: string, values: readonly T[]): T | undefined {
  const v = str(ctx, name);
  if (v === undefined) return undefined;
  if (!(values as readonly string[]).includes(v))
    throw new ConfigError(`--${name} must be ${values.join(', ')}, got "${v}"`);
  return v as T;
}

/** The session template from --flow, --type and --input / --input-file, over `base` (update keeps it). */
async function template(
  ctx: CommandContext,
  base: ScheduleSessionTemplate | undefined,
): Promise<ScheduleSessionTemplate | undefined> {
  const flow = str(ctx, 'flow');
  const type = str(ctx, 'type');
  const inputFlag = str(ctx, 'input');
  const inputFile = str(ctx, 'input-file');
  if (flow && (type || inputFlag || inputFile))
    throw new ConfigError('give either --flow or --type with --input, not both');
  if (inputFlag && inputFile) throw new ConfigError('give either --input or --input-file, not both');
  let s: CreateSessionBody | undefined;
  if (flow) s = sessionFromFile(await readJsonFile(flow, 'flow file'), flow);
  else if (type || inputFlag || inputFile) {
    s = { ...base, type: type ?? base?.type ?? '' };
    if (!s.type) throw new ConfigError('--input needs --type (or --flow)');
    if (inputFlag) s.input = parseJsonFlag(inputFlag, 'input');
    if (inputFile) s.input = await readJsonFile(inputFile, 'input file');
  }
  const flagged = Object.keys(TEMPLATE_FLAGS).some((f) => ctx.flags[f] !== undefined);
  if (!s && !flagged) return undefined;
  const out: CreateSessionBody = s ?? { ...base, type: base?.type ?? '' };
  applySessionFlags(ctx, out);
  const { runAt: _a, idempotencyKey: _k, ...rest } = out;
  return rest;
}

/** A schedule named by its id or its name. */
async function find(client: SfwClient, ref: string | undefined): Promise<ScheduleView> {
  if (!ref) throw new ConfigError(`missing <id|name>. Usage: sfw ${USAGE}`);
  if (isUuid(ref)) return client.getSchedule(ref);
  let cursor: string | undefined;
  do {
    const page = await client.listSchedules({ limit: 1000, ...(cursor ? { cursor } : {}) });
    const hit = page.items.find((s) => s.name === ref);
    if (hit) return hit;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  throw new ConfigError(`no schedule named "${ref}" (see: sfw schedules list)`);
}

const when = (t: string | null) => (t === null ? '-' : t.replace(/\.\d+Z$/, 'Z'));
const runs = (s: ScheduleView) => s.recent.map((r) => r.status).join(' ') || '-';

function printSchedule(ctx: CommandContext, s: ScheduleView): void {
  const rows: [string, string][] = [
    ['id', s.id],
    ['name', s.name],
    ['cron', `${s.cron} (${s.timezone})`],
    ['enabled', String(s.enabled)],
    ['catch-up', s.catchUp],
    ['overlap', s.overlap],
    ['next run', when(s.nextRunAt)],
    ['last run', when(s.lastRunAt)],
    ['session', JSON.stringify(s.session)],
  ];
  for (const [k, v] of rows) ctx.out(`${k.padEnd(9)} ${v}`);
  if (s.recent.length === 0) {
    ctx.out('\n(no sessions yet)');
    return;
  }
  ctx.out('');
  ctx.out(
    table(
      ['SCHEDULED FOR', 'SESSION', 'STATUS', 'ERROR'],
      s.recent.map((r) => [when(r.scheduledFor), r.id, r.status, r.errorMessage?.slice(0, 60)]),
    ),
  );
}

export default defineCommand({
  name: 'schedules',
  summary: 'Recurring sessions: list, create, change, enable, disable or delete schedules',
  usage: USAGE,
  flags: {
    cron: {
      type: 'string',
      value: 'expr',
      description: 'Five fields (minute hour day month weekday), or six with seconds first: "*/2 * * * * *"',
    },
    timezone: {
      type: 'string',
      value: 'zone',
      description: 'IANA time zone of the expression (default UTC)',
    },
    name: { type: 'string', value: 'name', description: 'update: a new name' },
    flow: {
      type: 'string',
      value: 'file',
      description: 'The session: a flow file ({"steps": [...]}) or a session file ({"type", "input", ...})',
    },
    type: { type: 'string', value: 'type', description: 'The session type (with --input or --input-file)' },
    input: { type: 'string', value: 'json', description: 'Session input as JSON' },
    'input-file': { type: 'string', value: 'file', description: 'Read the session input from a JSON file' },
    ...TEMPLATE_FLAGS,
    'catch-up': {
      type: 'string',
      value: 'mode',
      description:
        'After downtime: none (no missed fire time), latest (one session for the most recent, the default) or all',
    },
    overlap: {
      type: 'string',
      value: 'mode',
      description: 'While the previous session is queued or running: skip the fire (default) or allow it',
    },
    disabled: { type: 'boolean', description: 'create: the schedule starts disabled' },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 2,
  async run(ctx) {
    const [action, ref] = ctx.positionals;
    if (!ACTIONS.includes(action as Action))
      throw new ConfigError(
        `${action === undefined ? 'missing action' : `unknown action "${action}"`}: use ${ACTIONS.join(', ')}. Usage: sfw ${USAGE}`,
      );
    const client = clientFrom(ctx);
    const show = (s: ScheduleView) => {
      for (const w of s.warnings ?? []) ctx.err(`warning: ${w}`);
      if (ctx.flags.json) ctx.out(JSON.stringify(s));
      else printSchedule(ctx, s);
    };
    try {
      const catchUp = choice<ScheduleCatchUp>(ctx, 'catch-up', SCHEDULE_CATCH_UPS);
      const overlap = choice<ScheduleOverlap>(ctx, 'overlap', SCHEDULE_OVERLAPS);
      switch (action as Action) {
        case 'list': {
          if (ref !== undefined) throw new ConfigError(`unexpected argument "${ref}". Usage: sfw ${USAGE}`);
          const items: ScheduleView[] = [];
          let cursor: string | undefined;
          do {
            const page = await client.listSchedules({ limit: 1000, ...(cursor ? { cursor } : {}) });
            items.push(...page.items);
            cursor = page.nextCursor ?? undefined;
          } while (cursor);
          if (ctx.flags.json) ctx.out(JSON.stringify(items));
          else if (items.length === 0) ctx.out('(no schedules: create one with sfw schedules create)');
          else
            ctx.out(
              table(
                ['NAME', 'CRON', 'TIMEZONE', 'ENABLED', 'NEXT RUN', 'LAST RUNS (NEWEST FIRST)', 'ID'],
                items.map((s) => [
                  s.name,
                  s.cron,
                  s.timezone,
                  s.enabled ? 'yes' : 'no',
                  when(s.nextRunAt),
                  runs(s),
                  s.id,
                ]),
              ),
            );
          return;
        }
        case 'get':
          show(await client.getSchedule((await find(client, ref)).id));
          return;
        case 'create': {
          if (!ref) throw new ConfigError(`missing <name>. Usage: sfw ${USAGE}`);
          const cron = str(ctx, 'cron');
          if (!cron) throw new ConfigError('missing --cron, e.g. --cron "*/5 * * * *"');
          const session = await template(ctx, undefined);
          if (!session)
            throw new ConfigError('missing the session: --flow file.json, or --type with --input');
          const timezone = str(ctx, 'timezone');
          show(
            await client.createSchedule({
              name: ref,
              cron,
              session,
              ...(timezone ? { timezone } : {}),
              ...(ctx.flags.disabled ? { enabled: false } : {}),
              ...(catchUp ? { catchUp } : {}),
              ...(overlap ? { overlap } : {}),
            }),
          );
          return;
        }
        case 'update': {
          const cur = await find(client, ref);
          const body: UpdateScheduleBody = {};
          const cron = str(ctx, 'cron');
          const timezone = str(ctx, 'timezone');
          const name = str(ctx, 'name');
          if (cron) body.cron = cron;
          if (timezone) body.timezone = timezone;
          if (name) body.name = name;
          if (catchUp) body.catchUp = catchUp;
          if (overlap) body.overlap = overlap;
          const session = await template(ctx, cur.session);
          if (session) body.session = session;
          if (Object.keys(body).length === 0)
            throw new ConfigError(
              'nothing to change: give --cron, --timezone, --name, --flow, --type, --input…',
            );
          show(await client.updateSchedule(cur.id, body));
          return;
        }
        case 'enable':
        case 'disable':
          show(await client.updateSchedule((await find(client, ref)).id, { enabled: action === 'enable' }));
          return;
        case 'delete': {
          const cur = await find(client, ref);
          await client.deleteSchedule(cur.id);
          if (ctx.flags.json) ctx.out(JSON.stringify({ deleted: cur.id }));
          else
            ctx.out(
              `deleted schedule ${cur.name} (${cur.id}); its sessions stay (sfw sessions --schedule ${cur.id})`,
            );
          return;
        }
      }
    } finally {
      await client.close();
    }
  },
});
