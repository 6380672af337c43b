import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../core/errors.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, str, table } from '../command.js';

const USAGE = 'artifacts list <id>   |   artifacts get <id> <name> [-o file]';

export default defineCommand({
  name: 'artifacts',
  summary: "List a session's artifacts (screenshots, traces, console.log), or download one",
  usage: USAGE,
  flags: {
    output: {
      type: 'string',
      short: 'o',
      value: 'file',
      description: 'get: where to write the artifact (default: ./<name>; - for stdout)',
    },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 3,
  async run(ctx) {
    const [action, id, name] = ctx.positionals;
    if (action !== 'list' && action !== 'get')
      throw new ConfigError(
        `${action === undefined ? 'missing list or get' : `unknown action "${action}": use list or get`}. Usage: sfw ${USAGE}`,
      );
    if (!id) throw new ConfigError(`missing <id>. Usage: sfw ${USAGE}`);
    const client = clientFrom(ctx);
    try {
      if (action === 'list') {
        if (name !== undefined) throw new ConfigError(`unexpected argument "${name}". Usage: sfw ${USAGE}`);
        const { artifacts } = await client.getSession(id);
        if (ctx.flags.json) ctx.out(JSON.stringify(artifacts));
        else if (artifacts.length === 0) ctx.out(`(session ${id} has no artifacts)`);
        else
          ctx.out(
            table(
              ['NAME', 'BYTES', 'TYPE'],
              artifacts.map((a) => [a.name, a.size, a.contentType]),
            ),
          );
        return;
      }
      if (!name) throw new ConfigError(`missing <name> (see: sfw artifacts list ${id}). Usage: sfw ${USAGE}`);
      const { data } = await client.getArtifact(id, name);
      const output = str(ctx, 'output') ?? path.basename(name);
      if (output === '-') {
        ctx.write(data);
        return;
      }
      try {
        await writeFile(output, data);
      } catch (err) {
        throw new ConfigError(
          `cannot write ${output}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (choose another file with -o)`,
        );
      }
      ctx.err(`saved ${name} (${data.length} bytes) to ${output}`);
    } finally {
      await client.close();
    }
  },
});
