import { inject } from 'vitest';
import { createDb, type Db } from '../../src/store/db.js';
import { ensureDatabase } from '../../src/store/embedded.js';
import { migrate } from '../../src/store/migrate.js';

let counter = 0;

/** A fresh, migrated database for one test file (or one test). */
export async function freshDb(label: string): Promise<{ db: Db; url: string }> {
  const name =
    `t_${label.replace(/\W/g, '_').toLowerCase()}_${process.pid}_${Date.now().toString(36)}_${counter++}`.slice(
      0,
      60,
    );
  const url = await ensureDatabase(inject('pgAdminUrl'), name);
  const db = createDb({ connectionString: url, max: 20 });
  await migrate(db);
  return { db, url };
}
