import { CANCELLABLE_STATUSES, type CancelSessionsBody, type SfwClient } from '@session-framework/sdk';
import { ConfigError } from '../../core/errors.js';
import { isTerminal } from '../../core/types.js';
import type { SessionView } from '../../protocol/schemas.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, str, type CommandContext } from '../command.js';

/** `sfw cancel --tag t [--status s] [--type t]`: every match in one call. */
async function cancelMatching(ctx: CommandContext, client: SfwClient): Promise<number> {
  const body: CancelSessionsBody = {};
  const tag = str(ctx, 'tag');
  const status = str(ctx, 'status');
  const type = str(ctx, 'type');
  if (tag !== undefined) body.tag = tag;
  if (type !== undefined) body.type = type;
  if (status !== undefined) {
    if (!(CANCELLABLE_STATUSES as readonly string[]).includes(status))
      throw new ConfigError(`--status must be ${CANCELLABLE_STATUSES.join(' or ')}, got "${status}"`);
    body.status = status as CancelSessionsBody['status'];
  }
  const out = await client.cancelSessions(body);
  if (ctx.flags.json) ctx.out(JSON.stringify(out));
  else
    ctx.out(
      `cancelled ${out.cancelled} queued session${out.cancelled === 1 ? '' : 's'}; asked ${out.requested} running to stop (their runners stop them at the next heartbeat)`,
    );
  return 0;
}

export default defineCommand({
  name: 'cancel',
  summary: 'Cancel sessions: queued ones at once, running ones at their runner’s next heartbeat',
  usage: 'cancel <id> [id…]   |   cancel --tag t [--status queued|running] [--type t]',
  flags: {
    tag: { type: 'string', description: 'Cancel every queued or running session carrying this tag' },
    status: { type: 'string', description: 'With --tag or --type: only queued, or only running, sessions' },
    type: { type: 'string', description: 'Cancel every queued or running session of this type' },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  async run(ctx) {
    const bulk = ['tag', 'status', 'type'].some((f) => ctx.flags[f] !== undefined);
    if (bulk && ctx.positionals.length > 0)
      throw new ConfigError('give either session ids or --tag/--status/--type, not both');
    if (bulk && str(ctx, 'tag') === undefined && str(ctx, 'type') === undefined)
      throw new ConfigError('--status needs --tag or --type (sfw cancel --tag t --status queued)');
    if (!bulk && ctx.positionals.length === 0)
      throw new ConfigError('missing <id> or --tag. Usage: sfw cancel <id> [id…] | sfw cancel --tag t');
    const client = clientFrom(ctx);
    try {
      if (bulk) return await cancelMatching(ctx, client);
      const out: SessionView[] = [];
      // Exit 1 when a session had already finished: nothing was cancelled for it.
      let code = 0;
      for (const id of ctx.positionals) {
        const before = await client.getSession(id);
        const s = isTerminal(before.status) ? before : await client.cancelSession(id);
        out.push(s);
        if (isTerminal(before.status) || (isTerminal(s.status) && s.status !== 'cancelled')) {
          code = 1;
          ctx.err(`sfw cancel: session ${s.id} had already finished (${s.status}): nothing cancelled`);
        } else if (!ctx.flags.json) {
          ctx.out(
            s.status === 'running'
              ? `${s.id}: running (cancel requested: its runner stops it at its next heartbeat)`
              : `${s.id}: ${s.status}`,
          );
        }
      }
      if (ctx.flags.json) ctx.out(JSON.stringify(out));
      return code;
    } finally {
      await client.close();
    }
  },
});
