import pg from 'pg';

/** The Postgres pool and transaction helper. Everything that speaks SQL lives in src/store. */

// Counts (bigint) fit in a JS number for any realistic fleet; read them as numbers.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

export type Db = pg.Pool;
export type DbClient = pg.PoolClient;
export type Queryable = Pick<pg.Pool, 'query'>;

export interface DbOptions {
  connectionString: string;
  max?: number;
  applicationName?: string;
}

export function createDb(options: DbOptions): Db {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'session-framework',
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // A dropped idle connection (Postgres restart) must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  // The pool listens for errors only on idle clients; one checked out between two queries (a reaper or
  // migration transaction) would otherwise turn a Postgres restart into an uncaught 'error' event.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

export async function withTransaction<T>(db: Db, fn: (client: DbClient) => Promise<T>): Promise<T> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** True for errors that mean "the database is unreachable right now" rather than a bad query. */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  const code = e.code ?? '';
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN'].includes(code))
    return true;
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300')
    return true;
  const msg = e.message ?? '';
  return /Connection terminated|connection timeout|Client has encountered a connection error|terminating connection|timeout exceeded when trying to connect/i.test(
    msg,
  );
}

/** True for errors worth retrying as they are: the database is unreachable or busy, or chose this call as a deadlock's victim. */
export function isTransientDbError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code ?? '';
  return code === '40P01' || code === '40001' || isConnectionError(err);
}

export async function ping(db: Queryable): Promise<void> {
  await db.query('SELECT 1');
}
