import { ConfigError, SfwError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { ApiError, NetworkError } from '@session-framework/sdk';
import { describeError, helpText, parseCommandArgs, type Command } from './command.js';

const COMMANDS: Record<string, () => Promise<{ default: Command }>> = {
  up: () => import('./commands/up.js'),
  api: () => import('./commands/api.js'),
  runner: () => import('./commands/runner.js'),
  migrate: () => import('./commands/migrate.js'),
  enqueue: () => import('./commands/enqueue.js'),
  run: () => import('./commands/run.js'),
  dev: () => import('./commands/dev.js'),
  sessions: () => import('./commands/sessions.js'),
  status: () => import('./commands/status.js'),
  types: () => import('./commands/types.js'),
  cancel: () => import('./commands/cancel.js'),
  wait: () => import('./commands/wait.js'),
  live: () => import('./commands/live.js'),
  export: () => import('./commands/export.js'),
  artifacts: () => import('./commands/artifacts.js'),
  schedules: () => import('./commands/schedules.js'),
  webhooks: () => import('./commands/webhooks.js'),
  limits: () => import('./commands/limits.js'),
  states: () => import('./commands/states.js'),
};

let outputWatched = false;
let stdoutGone = false;

/**
 * A reader that goes away before the output ends (`sfw status | head -1`) makes the next write fail with
 * EPIPE, emitted on the stream: that output has nowhere to go, so it is dropped and the command ends as it
 * would have. Watched once per process (the error can arrive after a command returned).
 */
function watchOutput(): void {
  if (outputWatched) return;
  outputWatched = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    stdoutGone = true;
    if (e.code !== 'EPIPE') process.stderr.write(`sfw: cannot write the output: ${e.message}\n`);
  });
  // stderr piped too (`2>&1 | head`): nothing more can be said.
  process.stderr.on('error', () => {});
}

const write = (data: string | Uint8Array): void => {
  if (!stdoutGone) process.stdout.write(data);
};

async function usage(): Promise<string> {
  const lines = [
    `sfw ${VERSION} — Session Framework: scripted browser sessions at scale`,
    '',
    'Usage: sfw <command> [flags]',
    '',
    'Commands:',
  ];
  for (const [name, load] of Object.entries(COMMANDS))
    lines.push(`  ${name.padEnd(10)} ${(await load()).default.summary}`);
  lines.push('', 'Run sfw <command> --help for its flags and settings.');
  return lines.join('\n');
}

/** Runs the CLI; returns the exit code. Expected mistakes print one line naming what to fix, no stack. */
export async function main(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  watchOutput();
  const out = (l: string) => write(`${l}\n`);
  const err = (l: string) => process.stderr.write(`${l}\n`);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const target = name === 'help' ? rest[0] : undefined;
    if (target && COMMANDS[target]) out(helpText((await COMMANDS[target]()).default));
    else out(await usage());
    return 0;
  }
  if (name === '--version' || name === '-v') {
    out(VERSION);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    err(`sfw: unknown command "${name}". Commands: ${Object.keys(COMMANDS).join(', ')} (see sfw --help)`);
    return 2;
  }
  const command = (await load()).default;
  try {
    const parsed = parseCommandArgs(command, rest);
    if (parsed.help) {
      out(helpText(command));
      return 0;
    }
    const code = await command.run({
      flags: parsed.flags,
      positionals: parsed.positionals,
      env,
      out,
      err,
      write,
      isTTY: process.stderr.isTTY === true,
      stdoutIsTTY: process.stdout.isTTY === true,
    });
    return typeof code === 'number' ? code : 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`sfw ${name}: ${e.message}`);
      return 2;
    }
    if (e instanceof NetworkError) {
      err(
        `sfw ${name}: ${e.message}. Is the API running? Start it with sfw up, or set API_BASE_URL (--api-base-url).`,
      );
      return 1;
    }
    if (e instanceof ApiError) {
      err(
        `sfw ${name}: ${e.httpStatus} ${e.message}${e.httpStatus === 401 ? ' (set API_TOKEN or --api-token)' : ''}`,
      );
      return 1;
    }
    if (e instanceof SfwError) {
      err(`sfw ${name}: ${e.message}`);
      return 1;
    }
    err(`sfw ${name}: ${describeError(e)}`);
    if (env.SFW_DEBUG) err((e as Error).stack ?? '');
    return 1;
  }
}
