import { loadConfig } from '../../core/config.js';
import { ConfigError } from '../../core/errors.js';
import { RUNNER_CONFIG_KEYS, startRunner, type StartedRunner } from '../../runner/main.js';
import { API_CONFIG_KEYS, startApi } from '../../server/main.js';
import { describeChromium } from '../../browser/chromium.js';
import { defineCommand } from '../command.js';
import { untilSignal } from '../signals.js';
import { unpackProgress } from '../unpack-progress.js';

/**
 * The runner settings `up` takes besides the API's (the runner talks to this API with its token); the ones
 * both read (the target policy) are listed once.
 */
const UP_RUNNER_KEYS = RUNNER_CONFIG_KEYS.filter(
  (k) =>
    k !== 'apiBaseUrl' &&
    k !== 'runnerToken' &&
    k !== 'logLevel' &&
    !(API_CONFIG_KEYS as readonly string[]).includes(k),
);

export default defineCommand({
  name: 'up',
  summary: 'Start everything on this machine: embedded Postgres, the API with its dashboard, and one runner',
  usage: 'up [--port 3000] [--max-concurrency 3] [--sessions-dir ./sessions]',
  config: [...API_CONFIG_KEYS, ...UP_RUNNER_KEYS],
  maxPositionals: 0,
  async run(ctx) {
    const flags = ctx.flags as Record<string, string | boolean | undefined>;
    const cfg = loadConfig(API_CONFIG_KEYS, { flags, env: ctx.env });
    const runnerCfg = loadConfig(UP_RUNNER_KEYS, { flags, env: ctx.env });
    let forced = false;
    let runner: StartedRunner | undefined;
    const signalled = untilSignal(() => {
      forced = true;
      if (runner) {
        ctx.err('second signal: aborting in-flight sessions and handing them back to the queue…');
        void runner.force();
      }
    });
    const api = await startApi(cfg);
    try {
      runner = await startRunner(
        {
          ...runnerCfg,
          apiBaseUrl: api.url,
          runnerToken: cfg.runnerToken,
          logLevel: cfg.logLevel,
          allowedTargets: cfg.allowedTargets,
          allowPrivateTargets: cfg.allowPrivateTargets,
        },
        {
          fixedPollInterval: flags['poll-interval-ms'] !== undefined || Boolean(ctx.env.POLL_INTERVAL_MS),
          onChromiumUnpack: unpackProgress(ctx, 'up'),
        },
      );
      for (const p of runner.problems) ctx.err(`sfw up: skipped session module ${p}`);
      for (const w of runner.warnings) ctx.err(`sfw up: ${w}`);
      if (runner.chromium) ctx.err(`sfw up: browser: ${describeChromium(runner.chromium)}`);
    } catch (err) {
      if (!(err instanceof ConfigError)) {
        await api.stop();
        throw err;
      }
      ctx.err(`sfw up: no runner started: ${err.message}`);
    }
    ctx.err(
      `Session Framework is up: API and dashboard at ${api.url}/` +
        (runner ? `, runner ${runner.runnerId} serving ${runner.types.join(', ')}` : '') +
        '  (Ctrl-C stops everything)',
    );
    await signalled;
    let code = 0;
    if (runner) {
      ctx.err('stopping: draining the runner (Ctrl-C again aborts its sessions and hands them back)…');
      code = forced ? await runner.force() : await runner.stop();
    }
    ctx.err('stopping the API…');
    await api.stop();
    return code;
  },
});
