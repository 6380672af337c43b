import type { StateDetail } from '@session-framework/sdk';
import { ConfigError } from '../../core/errors.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, table, type CommandContext } from '../command.js';

const ACTIONS = ['list', 'get', 'delete'] as const;
const USAGE = 'states <list|get|delete> [name] [--json]';

/** Bytes as a person reads them. */
function size(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function show(ctx: CommandContext, s: StateDetail): void {
  if (ctx.flags.json) return ctx.out(JSON.stringify(s));
  ctx.out(
    [
      `name       ${s.name}`,
      `version    ${s.version}`,
      `size       ${size(s.size)}`,
      `encrypted  ${s.encrypted ? 'yes' : 'no (STATE_ENCRYPTION_KEY was not set when it was saved)'}`,
      `updated    ${s.updatedAt}`,
      `by session ${s.savedBySession ?? ''}`,
      `expires    ${s.expiresAt ?? 'never'}`,
      '',
      table(
        ['VERSION', 'SIZE', 'ENCRYPTED', 'SAVED', 'BY SESSION', 'EXPIRES'],
        s.versions.map((v) => [
          v.version,
          size(v.size),
          v.encrypted ? 'yes' : 'no',
          v.savedAt,
          v.savedBySession ?? '',
          v.expiresAt ?? 'never',
        ]),
      ),
    ].join('\n'),
  );
}

export default defineCommand({
  name: 'states',
  summary: 'Named session states (saved logins): list them, show one’s versions, delete one',
  usage: USAGE,
  flags: { ...JSON_FLAG },
  config: CLIENT_CONFIG,
  maxPositionals: 2,
  async run(ctx) {
    const [action, name] = ctx.positionals;
    if (!(ACTIONS as readonly (string | undefined)[]).includes(action))
      throw new ConfigError(
        `${action === undefined ? 'missing action' : `unknown action "${action}"`}: use ${ACTIONS.join(', ')}. Usage: sfw ${USAGE}`,
      );
    if (action !== 'list' && !name)
      throw new ConfigError(`missing <name> (see: sfw states list). Usage: sfw ${USAGE}`);
    if (action === 'list' && name !== undefined)
      throw new ConfigError(`unexpected argument "${name}". Usage: sfw ${USAGE}`);
    const client = clientFrom(ctx);
    try {
      switch (action) {
        case 'list': {
          const { items } = await client.listStates();
          if (ctx.flags.json) ctx.out(JSON.stringify(items));
          else if (items.length === 0)
            ctx.out('(no named states: a session with state: {save: "<name>"} saves one when it succeeds)');
          else
            ctx.out(
              table(
                ['NAME', 'VERSION', 'SIZE', 'ENCRYPTED', 'UPDATED', 'BY SESSION', 'EXPIRES'],
                items.map((s) => [
                  s.name,
                  s.version,
                  size(s.size),
                  s.encrypted ? 'yes' : 'no',
                  s.updatedAt,
                  s.savedBySession ?? '',
                  s.expiresAt ?? 'never',
                ]),
              ),
            );
          return;
        }
        case 'get':
          return show(ctx, await client.getState(name!));
        case 'delete':
          await client.deleteState(name!);
          if (!ctx.flags.json) ctx.out(`deleted state ${name!} (every version)`);
          return;
      }
    } finally {
      await client.close();
    }
  },
});
