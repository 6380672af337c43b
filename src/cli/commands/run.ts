import type { SfwClient } from '@session-framework/sdk';
import { ConfigError } from '../../core/errors.js';
import { isTerminal } from '../../core/types.js';
import type { CreateSessionBody, SessionView } from '../../protocol/schemas.js';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, intFlag, str, type CommandContext } from '../command.js';
import { parseJsonFlag, readJsonFile } from '../input.js';
import { SESSION_FLAGS, applySessionFlags } from '../session-flags.js';
import { printSession } from '../session-view.js';

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

/** Exit code of `sfw run` stopped by Ctrl-C (SIGINT) or SIGTERM, as shells count it. */
const INTERRUPTED = 130;

export default defineCommand({
  name: 'run',
  summary: 'Enqueue a flow (or session) from a JSON file, wait for it, print the result',
  usage: 'run <flow.json> [--input JSON] [--wait-ms n] [--timeout-ms n] [--cancel-on-exit]',
  flags: {
    input: { type: 'string', value: 'json', description: 'Values for {{input.x}} placeholders, as JSON' },
    ...SESSION_FLAGS,
    'wait-ms': {
      type: 'string',
      value: 'ms',
      description:
        'How long to wait for the result before giving up with exit code 2 (default: the session timeout × its attempts + 60 s)',
    },
    'cancel-on-exit': {
      type: 'boolean',
      description:
        'Cancel the session when sfw run stops before it ended (Ctrl-C, or --wait-ms passed); without it the session stays queued or keeps running',
    },
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
    applySessionFlags(ctx, session);
    const waitFlag = intFlag(ctx, 'wait-ms', 1, 86_400_000);
    if (waitFlag === undefined && str(ctx, 'timeout-ms') !== undefined)
      ctx.err(
        "note: --timeout-ms is the session's timeout, as in sfw enqueue; how long sfw run waits is --wait-ms",
      );
    const cancelOnExit = ctx.flags['cancel-on-exit'] === true;
    const client = clientFrom(ctx);
    const interrupt = whenInterrupted();
    try {
      const created = await client.createSession(session);
      if (!ctx.flags.json) ctx.err(`enqueued ${created.id}; waiting…`);
      const unserved = await unservedType(client, created.type);
      if (unserved) ctx.err(`note: ${unserved}; the session waits in the queue until one does`);
      const waitMs = waitFlag ?? created.timeoutMs * created.maxAttempts + 60_000;
      let done: SessionView | undefined;
      try {
        done = await client.waitUntilDone(created.id, { timeoutMs: waitMs, signal: interrupt.signal });
      } catch (err) {
        if (!interrupt.signal.aborted) throw err;
      }
      if (interrupt.signal.aborted || !done) {
        ctx.err(`interrupted: sfw run stopped waiting for session ${created.id}`);
        await leave(ctx, client, created.id, cancelOnExit);
        return INTERRUPTED;
      }
      if (ctx.flags.json) ctx.out(JSON.stringify(done));
      else printSession(done, ctx.out);
      if (!isTerminal(done.status)) {
        const why = done.status === 'queued' ? await unservedType(client, done.type) : undefined;
        ctx.err(`still ${done.status} after ${waitMs} ms${why ? `: ${why}` : ''}`);
        await leave(ctx, client, done.id, cancelOnExit);
        return 2;
      }
      return done.status === 'succeeded' ? 0 : 1;
    } finally {
      interrupt.dispose();
      await client.close();
    }
  },
});

/** Aborts on the first SIGINT or SIGTERM while sfw run waits; a second one ends the process at once. */
function whenInterrupted(): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onSignal = () => {
    dispose();
    ac.abort(new Error('interrupted'));
  };
  const dispose = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { signal: ac.signal, dispose };
}

/** sfw run stops before its session ended: cancel it (--cancel-on-exit), or say what becomes of it. */
async function leave(ctx: CommandContext, client: SfwClient, id: string, cancel: boolean): Promise<void> {
  if (cancel) {
    const s = await client.cancelSession(id);
    ctx.err(
      s.status === 'cancelled'
        ? `cancelled session ${id}`
        : s.status === 'running'
          ? `cancel requested for session ${id}: its runner stops it at its next heartbeat`
          : `session ${id} had already finished: ${s.status}`,
    );
    return;
  }
  const s = await client.getSession(id).catch(() => undefined);
  if (s && isTerminal(s.status)) {
    ctx.err(`session ${id} has ended meanwhile: ${s.status} (see: sfw sessions ${id})`);
    return;
  }
  const what =
    s?.status === 'running' ? 'keeps running' : s?.status === 'queued' ? 'stays queued' : 'goes on';
  ctx.err(`session ${id} ${what}; cancel it with: sfw cancel ${id}  (or run with --cancel-on-exit)`);
}

/**
 * Why a session of `type` would wait in the queue: no live runner is claiming, or none of them serves
 * the type (named with the types they serve). Undefined when one serves it, or a runner did not say.
 */
export async function unservedType(client: SfwClient, type: string): Promise<string | undefined> {
  const runners = await client.runners().catch(() => undefined);
  if (!runners) return undefined;
  const claiming = runners.filter((r) => r.live && r.status === 'running');
  if (claiming.length === 0) return 'no runner is live: start one with sfw runner (or sfw up)';
  if (claiming.some((r) => r.types.length === 0 || r.types.includes(type))) return undefined;
  const served = [...new Set(claiming.flatMap((r) => r.types))].sort();
  return `no live runner serves type "${type}" (live runners serve: ${served.join(', ')}; see sfw status)`;
}
