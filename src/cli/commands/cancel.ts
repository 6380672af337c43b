import { ConfigError } from '../../core/errors.js';
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
      const out = [];
      for (const id of ctx.positionals) {
        const s = await client.cancelSession(id);
        out.push(s);
        if (!ctx.flags.json)
          ctx.out(`${s.id}: ${s.status}${s.status === 'running' ? ' (cancel requested)' : ''}`);
      }
      if (ctx.flags.json) ctx.out(JSON.stringify(out));
    } finally {
      await client.close();
    }
  },
});
