import { loadConfig } from '../../core/config.js';
import { createDb } from '../../store/db.js';
import { migrate } from '../../store/migrate.js';
import { startEmbeddedPostgres } from '../../store/embedded.js';
import { defineCommand } from '../command.js';

const KEYS = ['databaseUrl', 'dataDir'] as const;

export default defineCommand({
  name: 'migrate',
  summary: 'Apply pending database migrations (safe to run concurrently)',
  usage: 'migrate [--database-url postgres://…]',
  config: KEYS,
  maxPositionals: 0,
  async run(ctx) {
    const cfg = loadConfig(KEYS, {
      flags: ctx.flags as Record<string, string | boolean | undefined>,
      env: ctx.env,
    });
    const embedded = cfg.databaseUrl === undefined ? await startEmbeddedPostgres(cfg.dataDir) : undefined;
    const db = createDb({ connectionString: cfg.databaseUrl ?? embedded?.url ?? '', max: 2 });
    try {
      const applied = await migrate(db);
      ctx.out(applied.length === 0 ? 'database is up to date' : `applied: ${applied.join(', ')}`);
    } finally {
      await db.end();
      await embedded?.stop();
    }
  },
});
