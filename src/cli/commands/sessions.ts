import { ConfigError } from '../../core/errors.js';
import { SESSION_STATUSES, type SessionStatus } from '../../core/types.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, intFlag, str, table } from '../command.js';
import { printSession } from '../session-view.js';

export default defineCommand({
  name: 'sessions',
  summary: 'List sessions (newest first), or show one',
  usage: 'sessions [id] [--status s] [--type t] [--tag t] [--schedule id] [--limit n] [--cursor c]',
  flags: {
    status: { type: 'string', description: `Only this status: ${SESSION_STATUSES.join(', ')}` },
    type: { type: 'string', description: 'Only this session type' },
    runner: { type: 'string', description: 'Only sessions claimed by this runner' },
    schedule: { type: 'string', value: 'id', description: 'Only sessions made by this schedule' },
    tag: { type: 'string', description: 'Only sessions carrying this tag' },
    limit: { type: 'string', description: 'Page size (1–1000, default 20)' },
    cursor: { type: 'string', description: 'nextCursor of the previous page' },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 1,
  async run(ctx) {
    const client = clientFrom(ctx);
    try {
      const id = ctx.positionals[0];
      if (id) {
        const s = await client.getSession(id);
        if (ctx.flags.json) ctx.out(JSON.stringify(s));
        else printSession(s, ctx.out);
        return;
      }
      const status = str(ctx, 'status');
      if (status !== undefined && !(SESSION_STATUSES as readonly string[]).includes(status)) {
        throw new ConfigError(`--status must be one of ${SESSION_STATUSES.join(', ')}, got "${status}"`);
      }
      const type = str(ctx, 'type');
      const runnerId = str(ctx, 'runner');
      const scheduleId = str(ctx, 'schedule');
      const tag = str(ctx, 'tag');
      const cursor = str(ctx, 'cursor');
      // Summaries: a list never carries inputs or results (`sfw sessions <id>` shows one whole).
      const page = await client.listSessions({
        fields: [],
        limit: intFlag(ctx, 'limit', 1, 1000) ?? 20,
        ...(status ? { status: status as SessionStatus } : {}),
        ...(type ? { type } : {}),
        ...(runnerId ? { runnerId } : {}),
        ...(scheduleId ? { scheduleId } : {}),
        ...(tag ? { tag } : {}),
        ...(cursor ? { cursor } : {}),
      });
      if (ctx.flags.json) {
        ctx.out(JSON.stringify(page));
        return;
      }
      ctx.out(
        table(
          ['ID', 'TYPE', 'STATUS', 'PRIO', 'ATTEMPT', 'RUNNER', 'CREATED', 'ERROR'],
          page.items.map((s) => [
            s.id,
            s.type,
            s.status,
            s.priority,
            `${s.attempt}/${s.maxAttempts}`,
            s.claimedBy,
            s.createdAt,
            (s.errorMessage ?? '').slice(0, 60),
          ]),
        ),
      );
      if (page.nextCursor) ctx.out(`more: sfw sessions --cursor ${page.nextCursor}`);
    } finally {
      await client.close();
    }
  },
});
