import { loadConfig } from '../../core/config.js';
import { API_CONFIG_KEYS, startApi } from '../../server/main.js';
import { defineCommand } from '../command.js';
import { untilSignal } from '../signals.js';

export default defineCommand({
  name: 'api',
  summary: 'Run the API server (embedded Postgres unless DATABASE_URL is set)',
  usage: 'api [--port 3000] [--host 127.0.0.1]',
  config: API_CONFIG_KEYS,
  maxPositionals: 0,
  async run(ctx) {
    const cfg = loadConfig(API_CONFIG_KEYS, {
      flags: ctx.flags as Record<string, string | boolean | undefined>,
      env: ctx.env,
    });
    const api = await startApi(cfg);
    api.log.info({ url: api.url }, 'API listening');
    ctx.err(`sfw api listening on ${api.url} (dashboard: ${api.url}/)`);
    await untilSignal();
    api.log.info('stopping');
    await api.stop();
  },
});
