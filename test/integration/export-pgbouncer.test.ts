import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import { createDb, type Db } from '../../src/store/db.js';
import { ensureDatabase } from '../../src/store/embedded.js';
import { migrate } from '../../src/store/migrate.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { pgbouncerBinary, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';

/**
 * The export's cursor through a real PgBouncer in transaction mode: the cursor lives in one transaction,
 * which PgBouncer keeps on one server connection, so two exports at once, read slowly while other requests
 * share the same small pool of server connections, each get every row exactly once.
 */

const BIN = pgbouncerBinary();
const REQUIRED = Boolean(process.env.REQUIRE_PGBOUNCER);
const ROWS = 3000;

if (!BIN && !REQUIRED) {
  it.skip('export through PgBouncer: skipped, no pgbouncer binary (apt-get install pgbouncer)', () => {});
} else {
  describe('export through PgBouncer (transaction mode)', () => {
    let bouncer: PgBouncer;
    let db: Db;
    let api: TestApi;

    beforeAll(async () => {
      bouncer = await startPgBouncer(inject('pgAdminUrl'), { poolSize: 3 });
      const database = `t_export_pgb_${process.pid}_${Date.now().toString(36)}`;
      await ensureDatabase(inject('pgAdminUrl'), database);
      const url = bouncer.urlFor(database);
      db = createDb({ connectionString: url, max: 10 });
      await migrate(db);
      api = await startTestApi('export_pgbouncer', { pollOnly: true, db: { db, url } });
      await db.query(
        `INSERT INTO sessions (id, type, input, status, finished_at, result, tags)
         SELECT gen_random_uuid(), 'pgb-export', '{}', 'succeeded', now(), jsonb_build_object('i', g), ARRAY['pgb']
         FROM generate_series(1, $1::integer) g`,
        [ROWS],
      );
    });
    afterAll(async () => {
      await api?.stop();
      await db?.end();
      await bouncer?.stop();
    });

    /** Reads an export a chunk at a time with a pause between each, answering its text. */
    async function slowExport(format: 'jsonl' | 'csv'): Promise<string> {
      const res = await request(`${api.url}/v1/sessions/export?tag=pgb&format=${format}`);
      expect(res.statusCode).toBe(200);
      let text = '';
      for await (const c of res.body) {
        text += (c as Buffer).toString();
        await new Promise((r) => setTimeout(r, 5));
      }
      return text;
    }

    it('two exports at once, with other requests between, each get every row once', async () => {
      const others = (async () => {
        for (let i = 0; i < 20; i++) {
          await api.client.createSession({ type: 'pgb-other', tags: ['pgb-other'] });
          await api.client.getTag('pgb');
        }
      })();
      const [jsonl, csv] = await Promise.all([slowExport('jsonl'), slowExport('csv'), others]);
      const ids = jsonl
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { result: { i: number } }).result.i);
      expect(new Set(ids).size).toBe(ROWS);
      expect(ids).toHaveLength(ROWS);
      expect(csv.trimEnd().split('\r\n')).toHaveLength(ROWS + 1);
      expect((await api.client.getTag('pgb-other')).total).toBe(20);
      // No transaction is left open on PgBouncer's server connections.
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(*)::integer AS n FROM pg_stat_activity
         WHERE datname = current_database() AND state = 'idle in transaction'`,
      );
      expect(rows[0]!.n).toBe(0);
    });
  });
}
