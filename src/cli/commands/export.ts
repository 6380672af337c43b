import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { EXPORT_FORMATS, type ExportFormat, type ExportSessionsQuery } from '@session-framework/sdk';
import { ConfigError } from '../../core/errors.js';
import { SESSION_STATUSES, type SessionStatus } from '../../core/types.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { defineCommand, str } from '../command.js';

export default defineCommand({
  name: 'export',
  summary: 'Export sessions (id, type, status, times, attempts, result, error) as JSON lines or CSV',
  usage: 'export [--format jsonl|csv] [--tag t] [--status s] [--type t] [--since time] [-o file]',
  flags: {
    format: { type: 'string', description: 'jsonl (one JSON object per line, default) or csv' },
    tag: { type: 'string', description: 'Only sessions carrying this tag' },
    status: { type: 'string', description: `Only this status: ${SESSION_STATUSES.join(', ')}` },
    type: { type: 'string', description: 'Only this session type' },
    since: { type: 'string', value: 'time', description: 'Only sessions created at or after this ISO time' },
    output: {
      type: 'string',
      short: 'o',
      value: 'file',
      description: 'Write to this file (default: stdout)',
    },
  },
  config: CLIENT_CONFIG,
  maxPositionals: 0,
  async run(ctx) {
    const format = str(ctx, 'format') ?? 'jsonl';
    if (!(EXPORT_FORMATS as readonly string[]).includes(format))
      throw new ConfigError(`--format must be ${EXPORT_FORMATS.join(' or ')}, got "${format}"`);
    const status = str(ctx, 'status');
    if (status !== undefined && !(SESSION_STATUSES as readonly string[]).includes(status))
      throw new ConfigError(`--status must be one of ${SESSION_STATUSES.join(', ')}, got "${status}"`);
    const since = str(ctx, 'since');
    if (since !== undefined && Number.isNaN(Date.parse(since)))
      throw new ConfigError(`--since must be an ISO date-time, got "${since}"`);
    const tag = str(ctx, 'tag');
    const type = str(ctx, 'type');
    const query: ExportSessionsQuery = {
      format: format as ExportFormat,
      ...(tag === undefined ? {} : { tag }),
      ...(status === undefined ? {} : { status: status as SessionStatus }),
      ...(type === undefined ? {} : { type }),
      ...(since === undefined ? {} : { since: new Date(since).toISOString() }),
    };
    const output = str(ctx, 'output');
    const client = clientFrom(ctx);
    try {
      let bytes = 0;
      const chunks = async function* () {
        for await (const c of client.exportSessions(query)) {
          bytes += c.length;
          yield c;
        }
      };
      if (output === undefined) {
        await pipeline(Readable.from(chunks()), process.stdout, { end: false });
        return 0;
      }
      // Written beside the file and moved into place once whole: a cut export leaves no partial file.
      const partial = `${output}.partial`;
      try {
        await pipeline(Readable.from(chunks()), createWriteStream(partial));
        await rename(partial, output);
      } catch (err) {
        await rm(partial, { force: true });
        throw err;
      }
      ctx.err(`exported ${bytes} bytes to ${output}`);
      return 0;
    } finally {
      await client.close();
    }
  },
});
