import type { TagView } from '@session-framework/sdk';
import { ConfigError } from '../../core/errors.js';
import { sleep } from '../../core/time.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, intFlag, str, type CommandContext } from '../command.js';
import { Progress } from '../progress.js';

/** How often the tag's counts are read while waiting. */
const POLL_MS = 1000;

function summary(v: TagView): string {
  const b = v.byStatus;
  return `${b.succeeded} succeeded, ${b.failed} failed, ${b.error} error, ${b.cancelled} cancelled, ${b.running} running, ${b.queued} queued`;
}

export default defineCommand({
  name: 'wait',
  summary: 'Wait until every session of a tag is final; exit 1 if any failed or errored',
  usage: 'wait --tag t [--timeout-ms ms] [--json]',
  flags: {
    tag: { type: 'string', description: 'The tag whose sessions to wait for' },
    'timeout-ms': {
      type: 'string',
      value: 'ms',
      description: 'Give up after this long (exit 1; default: no limit)',
    },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 0,
  async run(ctx: CommandContext) {
    const tag = str(ctx, 'tag');
    if (tag === undefined) throw new ConfigError('missing --tag. Usage: sfw wait --tag t');
    const timeoutMs = intFlag(ctx, 'timeout-ms', 1, 2_147_483_647);
    const until = timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
    const client = clientFrom(ctx);
    try {
      let progress: Progress | undefined;
      let total = -1;
      for (;;) {
        const v = await client.getTag(tag);
        if (v.total === 0) {
          ctx.err(`sfw wait: no session carries tag "${tag}"`);
          return 1;
        }
        // A batch still being enqueued grows: the bar follows its total.
        if (v.total !== total) {
          progress?.done();
          progress = new Progress(ctx, `tag ${tag}`, v.total);
          total = v.total;
        }
        progress?.update(v.finished, `(${v.byStatus.failed + v.byStatus.error} failed)`);
        const timedOut = !v.done && Date.now() >= until;
        if (v.done || timedOut) {
          progress?.done();
          const bad = v.byStatus.failed + v.byStatus.error;
          if (ctx.flags.json) ctx.out(JSON.stringify(v));
          else ctx.out(`tag ${tag}: ${v.finished}/${v.total} final: ${summary(v)}`);
          if (timedOut) {
            ctx.err(
              `sfw wait: ${v.total - v.finished} of ${v.total} sessions still not final after ${timeoutMs} ms`,
            );
            return 1;
          }
          return bad > 0 ? 1 : 0;
        }
        await sleep(Math.max(0, Math.min(POLL_MS, until - Date.now())));
      }
    } finally {
      await client.close();
    }
  },
});
