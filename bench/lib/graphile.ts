import { Logger, makeWorkerUtils, run, type Runner, type Task, type WorkerUtils } from 'graphile-worker';

/** graphile-worker, the peer we measure against, in its own database on the same Postgres server. */

const silent = new Logger(() => () => {});

export interface Graphile {
  utils: WorkerUtils;
  runner: Runner;
  stop(): Promise<void>;
}

export async function startGraphile(
  connectionString: string,
  concurrency: number,
  tasks: Record<string, Task>,
): Promise<Graphile> {
  const utils = await makeWorkerUtils({ connectionString, logger: silent });
  await utils.migrate();
  const runner = await run({
    connectionString,
    concurrency,
    // One connection per concurrent job plus the LISTEN connection and headroom, as graphile-worker advises.
    maxPoolSize: concurrency + 2,
    noHandleSignals: true,
    pollInterval: 2000,
    logger: silent,
    taskList: tasks,
  });
  return {
    utils,
    runner,
    async stop() {
      await runner.stop();
      await utils.release();
    },
  };
}
