import { ConfigError } from '../../core/errors.js';
import { isTerminal } from '../../core/types.js';
import type { SessionView } from '../../protocol/schemas.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand } from '../command.js';

export default defineCommand({
  name: 'cancel',
  summary: 'Cancel sessions: queued ones at once, running ones at their runner’s next heartbeat',
  usage: 'cancel <id> [id…]',
  flags: { ...JSON_FLAG },
  config: CLIENT_CONFIG,
  async run(ctx) {
    if (ctx.positionals.length === 0) throw new ConfigError('missing <id>. Usage: sfw cancel <id> [id…]');
    const client = clientFrom(ctx);
    try {
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
