import { loadConfig } from '../../core/config.js';
import { RUNNER_CONFIG_KEYS, startRunner, type StartedRunner } from '../../runner/main.js';
import { describeChromium } from '../../browser/chromium.js';
import { defineCommand } from '../command.js';
import { untilSignal } from '../signals.js';
import { unpackProgress } from '../unpack-progress.js';

export default defineCommand({
  name: 'runner',
  summary: 'Run a runner: claim sessions from the API and run them in Chromium',
  usage: 'runner [--api-base-url http://127.0.0.1:3000] [--max-concurrency 3] [--sessions-dir ./sessions]',
  config: RUNNER_CONFIG_KEYS,
  maxPositionals: 0,
  async run(ctx) {
    const flags = ctx.flags as Record<string, string | boolean | undefined>;
    const cfg = loadConfig(RUNNER_CONFIG_KEYS, { flags, env: ctx.env });
    // Signals are watched from the start, so a stop during startup still closes the browser.
    const holder: { runner?: StartedRunner } = {};
    let forced = false;
    const signalled = untilSignal(() => {
      forced = true;
      if (holder.runner) {
        ctx.err('second signal: aborting in-flight sessions and handing them back to the queue…');
        void holder.runner.force();
      }
    });
    const started = await startRunner(cfg, {
      fixedPollInterval: flags['poll-interval-ms'] !== undefined || Boolean(ctx.env.POLL_INTERVAL_MS),
      onChromiumUnpack: unpackProgress(ctx, 'runner'),
    });
    holder.runner = started;
    for (const p of started.problems) ctx.err(`sfw runner: skipped session module ${p}`);
    for (const w of started.warnings) ctx.err(`sfw runner: ${w}`);
    if (started.chromium) ctx.err(`sfw runner: browser: ${describeChromium(started.chromium)}`);
    ctx.err(
      `runner ${started.runnerId} serving ${started.types.join(', ')} from ${cfg.apiBaseUrl}` +
        ` (Ctrl-C drains; a second Ctrl-C aborts and hands sessions back)`,
    );
    await signalled;
    ctx.err(`stopping: letting in-flight sessions finish (up to ${cfg.shutdownTimeoutMs} ms)…`);
    const code = forced ? await started.force() : await started.stop();
    ctx.err(
      code === 0
        ? 'runner stopped'
        : 'runner stopped without reaching the API: sessions it held are recovered when their leases lapse',
    );
    return code;
  },
});
