import { ConfigError } from '../../core/errors.js';
import type { CreateSessionBody, SessionView } from '../../protocol/schemas.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, intFlag, str } from '../command.js';
import { parseJsonFlag, readJsonFile } from '../input.js';

/** A file holds either a flow's input ({steps: [...]}) or a whole session ({type, input, ...}). */
export function sessionFromFile(data: unknown, file: string): CreateSessionBody {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError(`${file} must hold a JSON object: {"steps": [...]} or {"type": ..., "input": ...}`);
  }
  const o = data as Record<string, unknown>;
  if (Array.isArray(o.steps)) return { type: 'flow', input: o };
  if (typeof o.type === 'string') return o as CreateSessionBody;
  throw new ConfigError(`${file} has neither "steps" (a flow) nor "type" (a session)`);
}

export function printSession(s: SessionView, out: (line: string) => void): void {
  out(`session ${s.id}: ${s.status}${s.attempt > 1 ? ` (attempt ${s.attempt})` : ''}`);
  if (s.errorMessage) out(`error: ${s.errorMessage}`);
  if (s.result !== null && s.result !== undefined) out(JSON.stringify(s.result, null, 2));
  for (const a of s.artifacts)
    out(`artifact: ${a.name} (${a.size} bytes) /v1/sessions/${s.id}/artifacts/${a.name}`);
}

export default defineCommand({
  name: 'run',
  summary: 'Enqueue a flow (or session) from a JSON file, wait for it, print the result',
  usage: 'run <flow.json> [--input JSON] [--timeout-ms n]',
  flags: {
    input: { type: 'string', description: 'Values for {{input.x}} placeholders, as JSON' },
    'timeout-ms': {
      type: 'string',
      description: 'How long to wait for the result (default: the session timeout + 60 s)',
    },
    priority: { type: 'string', description: 'Higher runs first' },
    trace: { type: 'string', description: 'Playwright trace: off, on-failure or always' },
    ...JSON_FLAG,
  },
  config: CLIENT_CONFIG,
  maxPositionals: 1,
  async run(ctx) {
    const file = ctx.positionals[0];
    if (!file) throw new ConfigError('missing <flow.json>. Usage: sfw run <flow.json>');
    const session = sessionFromFile(await readJsonFile(file, 'flow file'), file);
    const extra = str(ctx, 'input');
    if (extra) {
      const values = parseJsonFlag(extra, 'input');
      if (typeof values !== 'object' || values === null)
        throw new ConfigError('--input must be a JSON object');
      session.input = { ...(session.input as object), ...values };
    }
    const priority = intFlag(ctx, 'priority', -1000, 1000);
    if (priority !== undefined) session.priority = priority;
    const trace = str(ctx, 'trace');
    if (trace !== undefined) {
      if (!['off', 'on-failure', 'always'].includes(trace))
        throw new ConfigError(`--trace must be off, on-failure or always, got "${trace}"`);
      session.artifacts = { ...session.artifacts, trace: trace as 'off' | 'on-failure' | 'always' };
    }
    const client = clientFrom(ctx);
    try {
      const created = await client.createSession(session);
      if (!ctx.flags.json) ctx.err(`enqueued ${created.id}; waiting…`);
      const waitMs =
        intFlag(ctx, 'timeout-ms', 1, 86_400_000) ?? created.timeoutMs * created.maxAttempts + 60_000;
      const done = await client.waitUntilDone(created.id, { timeoutMs: waitMs });
      if (ctx.flags.json) ctx.out(JSON.stringify(done));
      else printSession(done, ctx.out);
      if (done.status === 'queued' || done.status === 'running') {
        ctx.err(
          `still ${done.status} after ${waitMs} ms (is a runner serving type "${done.type}"? see: sfw status)`,
        );
        return 2;
      }
      return done.status === 'succeeded' ? 0 : 1;
    } finally {
      await client.close();
    }
  },
});
