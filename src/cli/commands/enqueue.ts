import { ConfigError } from '../../core/errors.js';
import type { CreateSessionBody } from '../../protocol/schemas.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, intFlag, str } from '../command.js';
import { parseJsonFlag, readJsonFile } from '../input.js';
import { Progress } from '../progress.js';
import { SESSION_FLAGS, applySessionFlags } from '../session-flags.js';

export default defineCommand({
  name: 'enqueue',
  summary: 'Enqueue sessions of a type (one, --count copies, or a batch file)',
  usage:
    'enqueue <type> [--input JSON | --input-file f.json] [--priority n] [--count n]   |   enqueue --batch-file sessions.json',
  flags: {
    input: { type: 'string', value: 'json', description: 'Session input as JSON' },
    'input-file': { type: 'string', value: 'file', description: 'Read the session input from a JSON file' },
    ...SESSION_FLAGS,
    'idempotency-key': {
      type: 'string',
      value: 'key',
      description:
        'Repeat-safe key: the same key with the same session again answers the first one; with another session, an error',
    },
    count: { type: 'string', value: 'n', description: 'Enqueue this many copies in batches' },
    'batch-file': {
      type: 'string',
      value: 'file',
      description: 'JSON file: an array of sessions or {sessions: [...]}',
    },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 1,
  async run(ctx) {
    const client = clientFrom(ctx);
    try {
      let sessions: CreateSessionBody[];
      const batchFile = str(ctx, 'batch-file');
      if (batchFile) {
        if (ctx.positionals.length > 0) throw new ConfigError('give either <type> or --batch-file, not both');
        const data = await readJsonFile(batchFile, 'batch file');
        const list = Array.isArray(data) ? data : (data as { sessions?: unknown }).sessions;
        if (!Array.isArray(list))
          throw new ConfigError(
            `batch file ${batchFile} must hold an array of sessions or {"sessions": [...]}`,
          );
        // The session flags given apply to every session of the file.
        sessions = (list as CreateSessionBody[]).map((one) => {
          const s = { ...one };
          applySessionFlags(ctx, s);
          return s;
        });
      } else {
        const type = ctx.positionals[0];
        if (!type)
          throw new ConfigError(
            'missing <type>. Usage: sfw enqueue <type> [--input JSON]  (see sfw enqueue --help)',
          );
        const inputFlag = str(ctx, 'input');
        const inputFile = str(ctx, 'input-file');
        if (inputFlag && inputFile) throw new ConfigError('give either --input or --input-file, not both');
        const input = inputFlag
          ? parseJsonFlag(inputFlag, 'input')
          : inputFile
            ? await readJsonFile(inputFile, 'input file')
            : undefined;
        const one: CreateSessionBody = { type };
        if (input !== undefined) one.input = input;
        applySessionFlags(ctx, one);
        const key = str(ctx, 'idempotency-key');
        const count = intFlag(ctx, 'count', 1, 10_000_000) ?? 1;
        if (key !== undefined && count > 1)
          throw new ConfigError('--idempotency-key works with one session, not --count');
        if (key !== undefined) one.idempotencyKey = key;
        sessions = Array.from({ length: count }, () => one);
      }
      const progress = new Progress(ctx, 'enqueue', sessions.length);
      const ids: string[] = [];
      // What the API could not check (a type no runner has registered), said once each, on stderr.
      const warnings = new Set<string>();
      for (let i = 0; i < sessions.length; i += 10_000) {
        const chunk = sessions.slice(i, i + 10_000);
        const answer =
          chunk.length === 1 && chunk[0]
            ? await client.createSession(chunk[0]).then((s) => ({ items: [s], warnings: s.warnings }))
            : await client.createSessions(chunk);
        ids.push(...answer.items.map((s) => s.id));
        for (const w of answer.warnings ?? []) warnings.add(w);
        progress.update(ids.length);
      }
      progress.done();
      for (const w of warnings) ctx.err(`warning: ${w}`);
      if (ctx.flags.json) ctx.out(JSON.stringify({ ids }));
      else for (const id of ids.length > 20 ? [] : ids) ctx.out(id);
      if (!ctx.flags.json && ids.length > 20)
        ctx.out(`enqueued ${ids.length} sessions (first ${ids[0]}, last ${ids[ids.length - 1]})`);
    } finally {
      await client.close();
    }
  },
});
