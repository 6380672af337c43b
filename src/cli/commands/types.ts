import { ConfigError } from '../../core/errors.js';
import type { SessionTypeView } from '../../protocol/schemas.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, table } from '../command.js';

export default defineCommand({
  name: 'types',
  summary: 'List the session types runners registered, or show one type’s input schema and runners',
  usage: 'types [<type>] [--json]',
  flags: { ...JSON_FLAG },
  config: CLIENT_CONFIG,
  maxPositionals: 1,
  async run(ctx) {
    const client = clientFrom(ctx);
    try {
      const types = await client.types();
      const name = ctx.positionals[0];
      if (name === undefined) {
        if (ctx.flags.json) return void ctx.out(JSON.stringify(types));
        ctx.out(typesTable(types));
        return;
      }
      const t = types.find((x) => x.name === name);
      if (!t)
        throw new ConfigError(
          `no runner has registered type "${name}" (registered: ${types.map((x) => x.name).join(', ')})`,
        );
      if (ctx.flags.json) return void ctx.out(JSON.stringify(t));
      ctx.out(`type:    ${t.name}${t.builtIn ? ' (built in)' : ''}`);
      ctx.out(`schema:  ${t.schemaHash ?? 'none'}`);
      if (t.note) ctx.out(`note:    ${t.note}`);
      if (t.conflict) ctx.out(`conflict: ${t.conflict.message}`);
      ctx.out('');
      ctx.out(
        t.runners.length === 0
          ? '(no runner in the fleet view registered it; its last schema still applies)'
          : table(
              ['RUNNER', 'STATUS', 'REGISTERED', 'SCHEMA'],
              t.runners.map((r) => [
                r.id,
                r.live || r.status === 'stopped' ? r.status : `${r.status} (down)`,
                r.registeredAt,
                r.schemaHash ? r.schemaHash.slice(0, 12) : 'none',
              ]),
            ),
      );
      if (t.schema) {
        ctx.out('');
        ctx.out(JSON.stringify(t.schema, null, 2));
      }
    } finally {
      await client.close();
    }
  },
});

/** One row per type: its schema (hash, built in or none), runners, live ones, a conflict or its note. */
export function typesTable(types: SessionTypeView[], maxNote = Number.POSITIVE_INFINITY): string {
  return table(
    ['TYPE', 'INPUT SCHEMA', 'RUNNERS', 'LIVE', 'NOTE'],
    types.map((t) => {
      const note = t.conflict?.message ?? (t.builtIn ? '' : (t.note ?? ''));
      return [
        t.name,
        t.builtIn ? 'built in' : t.schemaHash ? t.schemaHash.slice(0, 12) : 'none',
        t.runners.length,
        t.runners.filter((r) => r.live).length,
        note.length > maxNote ? `${note.slice(0, maxNote - 1)}…` : note,
      ];
    }),
  );
}
