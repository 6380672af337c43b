import { loadConfig } from '../../core/config.js';
import { API_CONFIG_KEYS, startApi } from '../../server/main.js';
import { defineCommand } from '../command.js';
import { untilSignal } from '../signals.js';

export default defineCommand({
  name: 'up',
  summary: 'Start everything on this machine: embedded Postgres, the API with its dashboard, and one runner',
  usage: 'up [--port 3000] [--max-concurrency 3]',
  config: API_CONFIG_KEYS,
  maxPositionals: 0,
  async run(ctx) {
    const cfg = loadConfig(API_CONFIG_KEYS, {
      flags: ctx.flags as Record<string, string | boolean | undefined>,
      env: ctx.env,
    });
    const api = await startApi(cfg);
    ctx.err(`Session Framework is up: API and dashboard at ${api.url}/  (Ctrl-C stops everything)`);
    await untilSignal();
    ctx.err('stopping…');
    await api.stop();
  },
});
