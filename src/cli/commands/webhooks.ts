import {
  WEBHOOK_EVENTS,
  type DeliveryStatus,
  type WebhookEventName,
  type WebhookView,
} from '@session-framework/sdk';
import { ConfigError } from '../../core/errors.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, intFlag, str, table, type CommandContext } from '../command.js';

const ACTIONS = ['list', 'create', 'get', 'update', 'delete', 'deliveries', 'retry'] as const;
const USAGE = 'webhooks <list|create|get|update|delete|deliveries|retry> [id] [deliveryId] [flags]';
const DELIVERY_STATUSES: readonly DeliveryStatus[] = ['pending', 'delivered', 'failed'];

/** `--events session.failed,session.error`: each one known, at least one. */
function events(ctx: CommandContext): WebhookEventName[] | undefined {
  const raw = str(ctx, 'events');
  if (raw === undefined) return undefined;
  const list = raw
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  const bad = list.find((e) => !(WEBHOOK_EVENTS as readonly string[]).includes(e));
  if (bad !== undefined || list.length === 0)
    throw new ConfigError(
      `--events ${bad === undefined ? 'is empty' : `"${bad}" is not an event`}: use ${WEBHOOK_EVENTS.join(', ')} (comma-separated)`,
    );
  return [...new Set(list)] as WebhookEventName[];
}

function enabled(ctx: CommandContext): boolean | undefined {
  if (ctx.flags.enable && ctx.flags.disable)
    throw new ConfigError('--enable and --disable: give one of them');
  if (ctx.flags.enable) return true;
  if (ctx.flags.disable) return false;
  return undefined;
}

function show(ctx: CommandContext, w: WebhookView): void {
  if (ctx.flags.json) return ctx.out(JSON.stringify(w));
  ctx.out(
    [
      `id       ${w.id}`,
      `url      ${w.url}`,
      `events   ${w.events.join(', ')}`,
      `enabled  ${w.enabled}`,
      `secret   ${w.secret}`,
      `created  ${w.createdAt}`,
    ].join('\n'),
  );
}

export default defineCommand({
  name: 'webhooks',
  summary: 'Webhooks: signed notifications when sessions finish, and their deliveries',
  usage: USAGE,
  flags: {
    url: { type: 'string', value: 'url', description: 'create, update: the receiver (http or https)' },
    events: {
      type: 'string',
      value: 'events',
      description: `create, update: comma-separated, among ${WEBHOOK_EVENTS.slice(0, -1).join(', ')}, or session.finished for all four`,
    },
    secret: {
      type: 'string',
      value: 'secret',
      description:
        'create, update: the signing secret, whsec_ + base64 (create: a new random one by default)',
    },
    enable: { type: 'boolean', description: 'update: send deliveries again' },
    disable: { type: 'boolean', description: 'create, update: write no deliveries for it until enabled' },
    reveal: { type: 'boolean', description: 'get: show the secret in full' },
    status: { type: 'string', value: 'status', description: 'deliveries: only pending, delivered or failed' },
    limit: {
      type: 'string',
      value: 'n',
      description: 'list, deliveries: how many (default 50, newest first)',
    },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 3,
  async run(ctx) {
    const [action, id, deliveryId] = ctx.positionals;
    if (!(ACTIONS as readonly (string | undefined)[]).includes(action))
      throw new ConfigError(
        `${action === undefined ? 'missing action' : `unknown action "${action}"`}: use ${ACTIONS.join(', ')}. Usage: sfw ${USAGE}`,
      );
    const needsId = action !== 'list' && action !== 'create';
    if (needsId && !id) throw new ConfigError(`missing <id> (see: sfw webhooks list). Usage: sfw ${USAGE}`);
    if (!needsId && id !== undefined)
      throw new ConfigError(`unexpected argument "${id}". Usage: sfw ${USAGE}`);
    if (action === 'retry' && !deliveryId)
      throw new ConfigError(`missing <deliveryId> (see: sfw webhooks deliveries ${id}). Usage: sfw ${USAGE}`);
    if (action !== 'retry' && deliveryId !== undefined)
      throw new ConfigError(`unexpected argument "${deliveryId}". Usage: sfw ${USAGE}`);
    const status = str(ctx, 'status');
    if (status !== undefined && !(DELIVERY_STATUSES as readonly string[]).includes(status))
      throw new ConfigError(`--status "${status}": use ${DELIVERY_STATUSES.join(', ')}`);
    const limit = intFlag(ctx, 'limit', 1, 1000);
    const client = clientFrom(ctx);
    try {
      switch (action) {
        case 'list': {
          const { items } = await client.listWebhooks(limit === undefined ? {} : { limit });
          if (ctx.flags.json) ctx.out(JSON.stringify(items));
          else if (items.length === 0)
            ctx.out('(no webhooks: sfw webhooks create --url <url> --events session.failed)');
          else
            ctx.out(
              table(
                ['ID', 'URL', 'EVENTS', 'ENABLED'],
                items.map((w) => [w.id, w.url, w.events.join(','), String(w.enabled)]),
              ),
            );
          return;
        }
        case 'create': {
          const url = str(ctx, 'url');
          const ev = events(ctx);
          if (!url || !ev) throw new ConfigError(`create needs --url and --events. Usage: sfw ${USAGE}`);
          const secret = str(ctx, 'secret');
          const on = enabled(ctx);
          const w = await client.createWebhook({
            url,
            events: ev,
            ...(secret === undefined ? {} : { secret }),
            ...(on === undefined ? {} : { enabled: on }),
          });
          show(ctx, w);
          if (!ctx.flags.json)
            ctx.err(
              'Keep the secret: it is shown in full now, later only with sfw webhooks get <id> --reveal.',
            );
          return;
        }
        case 'get':
          return show(ctx, await client.getWebhook(id!, { reveal: ctx.flags.reveal === true }));
        case 'update': {
          const url = str(ctx, 'url');
          const ev = events(ctx);
          const secret = str(ctx, 'secret');
          const on = enabled(ctx);
          if (url === undefined && ev === undefined && secret === undefined && on === undefined)
            throw new ConfigError('update needs one of --url, --events, --secret, --enable, --disable');
          return show(
            ctx,
            await client.updateWebhook(id!, {
              ...(url === undefined ? {} : { url }),
              ...(ev === undefined ? {} : { events: ev }),
              ...(secret === undefined ? {} : { secret }),
              ...(on === undefined ? {} : { enabled: on }),
            }),
          );
        }
        case 'delete':
          await client.deleteWebhook(id!);
          if (!ctx.flags.json) ctx.out(`deleted webhook ${id!} and its deliveries`);
          return;
        case 'deliveries': {
          const { items } = await client.listWebhookDeliveries(id!, {
            ...(limit === undefined ? {} : { limit }),
            ...(status === undefined ? {} : { status: status as DeliveryStatus }),
          });
          if (ctx.flags.json) ctx.out(JSON.stringify(items));
          else if (items.length === 0)
            ctx.out(`(webhook ${id!} has no deliveries${status ? ` ${status}` : ''})`);
          else
            ctx.out(
              table(
                ['ID', 'SESSION', 'EVENT', 'STATUS', 'TRIES', 'LAST', 'NEXT TRY', 'ERROR'],
                items.map((d) => [
                  d.id,
                  d.sessionId,
                  d.event,
                  d.status,
                  d.attempts,
                  d.lastStatusCode ?? '',
                  d.nextAttemptAt ?? '',
                  d.lastError ?? '',
                ]),
              ),
            );
          return;
        }
        case 'retry': {
          const d = await client.redeliverWebhook(id!, deliveryId!);
          if (ctx.flags.json) ctx.out(JSON.stringify(d));
          else ctx.out(`${d.id}: ${d.status}, due now (tried ${d.attempts} times before)`);
          return;
        }
      }
    } finally {
      await client.close();
    }
  },
});
