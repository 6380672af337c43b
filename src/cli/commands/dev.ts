import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadConfig } from '../../core/config.js';
import { ConfigError, ValidationError } from '../../core/errors.js';
import { DEFAULT_SESSION_TIMEOUT_MS } from '../../core/types.js';
import { checkFlowInput } from '../../protocol/flow.js';
import type { ClaimedSession } from '../../protocol/schemas.js';
import { checkAddress, checkHost, createTargetCheck, parseTargetPolicy } from '../../protocol/targets.js';
import { chromiumHelp, describeChromium, findChromium } from '../../browser/chromium.js';
import { EgressProxy } from '../../browser/egress.js';
import type { LogSink } from '../../browser/log.js';
import { BrowserPool } from '../../browser/pool.js';
import { executeSession, type ExecutionOutcome } from '../../sessions/execute.js';
import type { FlowStepEvent } from '../../sessions/flow.js';
import { createRedactor, type Redact } from '../../sessions/redact.js';
import { flowSessionType, loadSessionModule, type SessionType } from '../../sessions/registry.js';
import { defineCommand, intFlag, str, type CommandContext } from '../command.js';
import { parseJsonFlag, readJsonFile } from '../input.js';
import { stepTarget } from '../session-view.js';
import { unpackProgress } from '../unpack-progress.js';
import { sessionFromFile } from './run.js';

/**
 * `sfw dev`: one session run here and now, without the queue, the API or Postgres. The same executor,
 * Chromium discovery, launch flags, egress proxy and target policy as a runner, so what passes here
 * passes there.
 */

const CONFIG = ['chromiumPath', 'allowedTargets', 'allowPrivateTargets', 'allowFlowEvaluate'] as const;
const MODULE_FILE = /\.(ts|mts|cts|js|mjs|cjs)$/;
const INTERRUPTED = 130;

interface DevSession {
  type: SessionType;
  input: unknown;
  timeoutMs: number;
}

export default defineCommand({
  name: 'dev',
  summary:
    'Run one flow file or session module here, step by step, with no API or Postgres (same browser and egress rules as a runner)',
  usage: 'dev <flow.json | module.ts|js> [--input JSON|@file] [--headed] [--timeout-ms n] [--out dir]',
  flags: {
    input: {
      type: 'string',
      value: 'json',
      description:
        "A module's input, or the values of a flow's {{input.x}} placeholders: JSON, or @file to read it from a file",
    },
    headed: {
      type: 'boolean',
      description: 'Show the browser window (needs a display); headless by default',
    },
    'timeout-ms': {
      type: 'string',
      value: 'ms',
      description: `The session's timeout (default: the file's timeoutMs, else ${DEFAULT_SESSION_TIMEOUT_MS})`,
    },
    out: {
      type: 'string',
      value: 'dir',
      description:
        'Save the artifacts (screenshots, artifacts.add files, console.log) in this folder; without it they are only listed',
    },
  },
  // The browser reaches sites through the runner's egress proxy and target policy, as a runner's does.
  config: CONFIG,
  maxPositionals: 1,
  async run(ctx) {
    const file = ctx.positionals[0];
    if (!file)
      throw new ConfigError(
        'missing <flow.json | module.ts>. Usage: sfw dev <flow.json | module.ts> [flags]',
      );
    const cfg = loadConfig(CONFIG, { flags: ctx.flags as Record<string, string | boolean>, env: ctx.env });
    const timeoutFlag = intFlag(ctx, 'timeout-ms', 1, 86_400_000);
    const input = await inputFlag(ctx);
    const dev = MODULE_FILE.test(file)
      ? await moduleSession(file, input, timeoutFlag)
      : await flowSession(file, input, timeoutFlag);
    const outDir = str(ctx, 'out');
    return runHere(ctx, dev, { outDir, headed: ctx.flags.headed === true, cfg });
  },
});

/** `--input '{"a":1}'` or `--input @input.json`. */
async function inputFlag(ctx: CommandContext): Promise<unknown> {
  const raw = str(ctx, 'input');
  if (raw === undefined) return undefined;
  if (raw.startsWith('@')) return readJsonFile(raw.slice(1), '--input file');
  return parseJsonFlag(raw, 'input');
}

async function moduleSession(
  file: string,
  input: unknown,
  timeoutMs: number | undefined,
): Promise<DevSession> {
  let type: SessionType;
  try {
    type = await loadSessionModule(file);
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message}`);
  }
  try {
    type.validateInput(input);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    throw new ConfigError(`--input: ${err.message} (checked against the input schema of ${type.name})`);
  }
  return { type, input, timeoutMs: timeoutMs ?? type.timeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS };
}

async function flowSession(
  file: string,
  values: unknown,
  timeoutMs: number | undefined,
): Promise<DevSession> {
  const session = sessionFromFile(await readJsonFile(file, 'flow file'), file);
  if (session.type !== 'flow') {
    throw new ConfigError(
      `${file} is a session of type "${session.type}": sfw dev runs a flow file or a session module (pass the module's file)`,
    );
  }
  let input = session.input;
  if (values !== undefined) {
    if (typeof values !== 'object' || values === null || Array.isArray(values))
      throw new ConfigError(
        '--input must be a JSON object for a flow: the values of its {{input.x}} placeholders',
      );
    input = { ...(input as object), ...values };
  }
  const problem = checkFlowInput(input);
  if (problem) throw new ConfigError(`${file}: ${problem.path}: ${problem.message}`);
  return {
    type: flowSessionType(),
    input,
    timeoutMs: timeoutMs ?? session.timeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS,
  };
}

async function runHere(
  ctx: CommandContext,
  dev: DevSession,
  opts: {
    outDir: string | undefined;
    headed: boolean;
    cfg: ReturnType<typeof loadConfig<(typeof CONFIG)[number]>>;
  },
): Promise<number> {
  const { cfg } = opts;
  const policy = parseTargetPolicy({
    allowedTargets: cfg.allowedTargets,
    allowPrivateTargets: cfg.allowPrivateTargets,
  });
  let egress: EgressProxy | undefined;
  let pool: BrowserPool | undefined;
  const ac = new AbortController();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(INTERRUPTED);
    interrupted = true;
    ctx.err('interrupted: stopping the session (Ctrl-C again to quit at once)…');
    ac.abort(new Error('interrupted (Ctrl-C)'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (dev.type.browser) {
      const found = await findChromium(cfg.chromiumPath, { onUnpackProgress: unpackProgress(ctx, 'dev') });
      if (!found) {
        throw new ConfigError(
          cfg.chromiumPath !== undefined
            ? `CHROMIUM_PATH=${cfg.chromiumPath} is not an executable file: set it to a Chromium or Chrome executable, or unset it to search the usual places`
            : chromiumHelp(),
        );
      }
      ctx.err(`browser: ${describeChromium(found)}${opts.headed ? ' (headed)' : ''}`);
      egress = new EgressProxy({
        rules: {
          checkName: (host, port) => checkHost(policy, host, port),
          checkAddress: (host, port, address) => checkAddress(policy, host, port, address),
        },
        log: quietLog(ctx),
      });
      await egress.start();
      pool = new BrowserPool({
        executablePath: found.path,
        headless: !opts.headed,
        prewarm: false,
        egress,
        log: quietLog(ctx),
      });
      await pool.start();
    }
    const session = claimed(dev);
    ctx.err(
      `running ${dev.type.kind === 'flow' ? 'flow' : `${dev.type.name} (${dev.type.source})`}, timeout ${dev.timeoutMs} ms`,
    );
    const started = performance.now();
    const outcome = await executeSession({
      session,
      type: dev.type,
      ...(pool ? { pool } : {}),
      signal: ac.signal,
      abort: (reason) => ac.abort(reason),
      upload: (name, data, contentType) => saveArtifact(ctx, opts.outDir, name, data, contentType),
      log: sessionLog(ctx),
      flow: {
        allowEvaluate: cfg.allowFlowEvaluate,
        checkUrl: createTargetCheck(policy),
        onStep: stepPrinter(ctx, createRedactor(dev.input)),
      },
    });
    const ms = Math.round(performance.now() - started);
    ctx.out(JSON.stringify(printable(outcome), null, 2));
    ctx.err(
      `${outcome.status} in ${ms} ms${outcome.errorMessage !== undefined ? `: ${outcome.errorMessage}` : ''}`,
    );
    if (interrupted) return INTERRUPTED;
    return outcome.status === 'succeeded' ? 0 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pool?.close().catch(() => undefined);
    await egress?.close().catch(() => undefined);
  }
}

/** The session as a runner would have claimed it: attempt 1 of 1, no lease. */
function claimed(dev: DevSession): ClaimedSession {
  const now = new Date().toISOString();
  return {
    id: `dev-${randomBytes(6).toString('hex')}`,
    type: dev.type.name,
    input: dev.input,
    priority: 0,
    attempt: 1,
    maxAttempts: 1,
    timeoutMs: dev.timeoutMs,
    leaseToken: 'dev',
    leaseExpiresAt: now,
    createdAt: now,
    artifactOptions: { screenshot: 'on-failure', trace: 'off' },
    browser: null,
  };
}

function printable(outcome: ExecutionOutcome): Record<string, unknown> {
  return {
    status: outcome.status,
    ...(outcome.result !== undefined ? { result: outcome.result } : {}),
    ...(outcome.errorMessage !== undefined ? { errorMessage: outcome.errorMessage } : {}),
  };
}

/** The browser's and the proxy's own lines: warnings only. */
function quietLog(ctx: CommandContext): LogSink {
  return { info: () => {}, warn: (obj, msg) => ctx.err(`warning: ${msg ?? ''}${dataText(obj)}`) };
}

/** A code session's log() lines (and the executor's warnings about it), as they come. */
function sessionLog(ctx: CommandContext): LogSink {
  return {
    info: (obj, msg) => ctx.err(`log: ${msg ?? ''}${dataText(obj)}`),
    warn: (obj, msg) => ctx.err(`warning: ${msg ?? ''}${dataText(obj)}`),
  };
}

function dataText(obj: object): string {
  const { sessionId: _, ...rest } = obj as Record<string, unknown>;
  if (Object.keys(rest).length === 0) return '';
  try {
    return ` ${JSON.stringify(rest)}`;
  } catch {
    return '';
  }
}

async function saveArtifact(
  ctx: CommandContext,
  outDir: string | undefined,
  name: string,
  data: Buffer,
  contentType: string,
): Promise<void> {
  if (outDir === undefined) {
    ctx.err(
      `artifact ${name} (${data.length} bytes, ${contentType}): not saved, pass --out <dir> to keep it`,
    );
    return;
  }
  const dir = resolve(outDir);
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  await writeFile(path, data);
  ctx.err(`artifact ${name} (${data.length} bytes) saved to ${path}`);
}

/**
 * Prints each flow step as it runs: one line per step (its number at the top level, then what it acted
 * on, ok or error, ms); a repeat's passes and an if's branch indented under it, then its own result.
 * Errors carry no secret of the input, as the session's stored result does.
 */
function stepPrinter(ctx: CommandContext, redact: Redact): (event: FlowStepEvent) => void {
  // Indentation of the steps at each depth (a repeat's steps sit under their pass line).
  const indentAt: number[] = [0];
  // Depths whose container has printed its first line (its result then goes on a closing line).
  const open = new Set<number>();
  let top = 0;
  const line = (depth: number, indent: number, text: string, numbered: boolean) => {
    const column = numbered && depth === 0 ? String(++top) : '';
    ctx.err(`${column.padEnd(3)}${'  '.repeat(indent)}${text}`);
  };
  return (event) => {
    const { depth, step } = event;
    const indent = indentAt[depth] ?? 0;
    if (event.kind === 'start') {
      const what =
        step.action === 'repeat'
          ? `repeat (up to ${step.max} passes)`
          : `if: ${event.branch === 'then' ? 'then' : 'else'} branch`;
      line(depth, indent, what, true);
      open.add(depth);
      indentAt[depth + 1] = indent + (step.action === 'repeat' ? 2 : 1);
      return;
    }
    if (event.kind === 'pass') {
      line(depth, indent + 1, `pass ${event.pass}`, false);
      return;
    }
    const r = event.result;
    const tail =
      `${r.ok ? 'ok' : 'error'}  ${r.ms} ms` +
      (r.error !== undefined ? `: ${redact(r.error)}` : '') +
      (r.warning !== undefined ? ` (warning: ${r.warning})` : '');
    if ((step.action === 'repeat' || step.action === 'if') && open.delete(depth)) {
      const passes = r.passes ? `, ${r.passes.length} pass${r.passes.length === 1 ? '' : 'es'}` : '';
      line(depth, indent, `${step.action}  ${tail}${passes}`, false);
      return;
    }
    const target = stepTarget(step);
    line(depth, indent, `${step.action}${target ? ` ${target}` : ''}  ${tail}`, true);
  };
}
