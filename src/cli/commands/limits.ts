import type { LimitView } from '@session-framework/sdk';
import { ConfigError } from '../../core/errors.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, intFlag, table, type CommandContext } from '../command.js';

const ACTIONS = ['list', 'set', 'get', 'delete'] as const;
const USAGE = 'limits <list|set|get|delete> [key] [--concurrency n] [--per-minute n] [--json]';

const bound = (n: number | null) => (n === null ? '-' : String(n));

function show(ctx: CommandContext, l: LimitView): void {
  if (ctx.flags.json) return ctx.out(JSON.stringify(l));
  ctx.out(
    [
      `key          ${l.key}`,
      `concurrency  ${bound(l.concurrency)}`,
      `per minute   ${bound(l.perMinute)}`,
      `running      ${l.running}`,
      `waiting      ${l.waiting}${l.releaseAt ? ` (next look ${l.releaseAt})` : ''}`,
      `last minute  ${bound(l.claimedLastMinute)} claimed`,
      ...(l.backoffUntil
        ? [`backing off  until ${l.backoffUntil} (the site answered 429/503 with Retry-After)`]
        : []),
      `updated      ${l.updatedAt}`,
    ].join('\n'),
  );
}

export default defineCommand({
  name: 'limits',
  summary: 'Per-key limits: at most N sessions of a key running, or claimed per minute, fleet-wide',
  usage: USAGE,
  flags: {
    concurrency: {
      type: 'string',
      value: 'n',
      description: 'set: at most n sessions of the key running at once, across all runners',
    },
    'per-minute': {
      type: 'string',
      value: 'n',
      description: 'set: at most n sessions of the key claimed in any 60 s',
    },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 2,
  async run(ctx) {
    const [action, key] = ctx.positionals;
    if (!(ACTIONS as readonly (string | undefined)[]).includes(action))
      throw new ConfigError(
        `${action === undefined ? 'missing action' : `unknown action "${action}"`}: use ${ACTIONS.join(', ')}. Usage: sfw ${USAGE}`,
      );
    if (action !== 'list' && !key)
      throw new ConfigError(
        `missing <key> (a session's concurrencyKey, e.g. shop.example.com). Usage: sfw ${USAGE}`,
      );
    if (action === 'list' && key !== undefined)
      throw new ConfigError(`unexpected argument "${key}". Usage: sfw ${USAGE}`);
    const concurrency = intFlag(ctx, 'concurrency', 1, 100_000);
    const perMinute = intFlag(ctx, 'per-minute', 1, 100_000);
    if (action !== 'set' && (concurrency !== undefined || perMinute !== undefined))
      throw new ConfigError(`--concurrency and --per-minute go with set. Usage: sfw ${USAGE}`);
    if (action === 'set' && concurrency === undefined && perMinute === undefined)
      throw new ConfigError('set needs --concurrency, --per-minute or both (a bound left out is none)');
    const client = clientFrom(ctx);
    try {
      switch (action) {
        case 'list': {
          const { items } = await client.listLimits();
          if (ctx.flags.json) ctx.out(JSON.stringify(items));
          else if (items.length === 0) ctx.out('(no limits: sfw limits set <key> --concurrency 2)');
          else
            ctx.out(
              table(
                ['KEY', 'CONCURRENCY', 'PER MINUTE', 'RUNNING', 'WAITING', 'LAST MINUTE', 'BACKOFF UNTIL'],
                items.map((l) => [
                  l.key,
                  bound(l.concurrency),
                  bound(l.perMinute),
                  l.running,
                  l.waiting,
                  bound(l.claimedLastMinute),
                  l.backoffUntil ?? '',
                ]),
              ),
            );
          return;
        }
        case 'set':
          return show(
            ctx,
            await client.putLimit(key!, {
              ...(concurrency === undefined ? {} : { concurrency }),
              ...(perMinute === undefined ? {} : { perMinute }),
            }),
          );
        case 'get':
          return show(ctx, await client.getLimit(key!));
        case 'delete': {
          const l = await client.deleteLimit(key!);
          if (ctx.flags.json) ctx.out(JSON.stringify(l));
          else
            ctx.out(
              `deleted the limit of ${l.key}${l.waiting ? `; its ${l.waiting} waiting sessions are queued again` : ''}`,
            );
          return;
        }
      }
    } finally {
      await client.close();
    }
  },
});
