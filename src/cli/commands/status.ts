import { ApiError } from '@session-framework/sdk';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, table } from '../command.js';
import { typesTable } from './types.js';

export default defineCommand({
  name: 'status',
  summary: 'Show the queue, the runners, the session types and active alerts',
  usage: 'status [--json]',
  flags: { ...JSON_FLAG },
  config: CLIENT_CONFIG,
  maxPositionals: 0,
  async run(ctx) {
    const client = clientFrom(ctx);
    try {
      const [queue, runners, alerts, types] = await Promise.all([
        client.queue(),
        client.runners(),
        client.alerts(),
        // An API older than type registration answers 404: no types to show.
        client.types().catch((err: unknown) => {
          if (err instanceof ApiError && err.status === 404) return undefined;
          throw err;
        }),
      ]);
      if (ctx.flags.json) {
        ctx.out(JSON.stringify({ queue, runners, alerts, ...(types ? { types } : {}) }));
        return;
      }
      ctx.out('QUEUE');
      ctx.out(
        table(
          Object.keys(queue.byStatus).map((s) => s.toUpperCase()),
          [Object.values(queue.byStatus)],
        ),
      );
      const age = queue.oldestQueuedAgeMs === null ? '-' : `${(queue.oldestQueuedAgeMs / 1000).toFixed(1)} s`;
      ctx.out(
        `oldest queued: ${age}   live runners: ${queue.runnersLive}   fleet capacity: ${queue.fleetCapacity}`,
      );
      ctx.out('');
      ctx.out('RUNNERS');
      ctx.out(
        runners.length === 0
          ? '(none yet: start one with sfw runner)'
          : table(
              ['RUNNER', 'STATUS', 'HEARTBEAT', 'ACTIVE/MAX', 'EXECUTED', 'FAILURES', 'UPTIME', 'TYPES'],
              runners.map((r) => [
                r.runnerId,
                r.live || r.status === 'stopped' ? r.status : `${r.status} (down)`,
                `${(r.heartbeatAgeMs / 1000).toFixed(1)} s ago`,
                `${r.activeSessions}/${r.maxConcurrency}`,
                r.totalSessionsExecuted,
                r.totalFailures,
                `${r.uptimeSeconds} s`,
                r.types.length > 0 ? r.types.join(',') : '?',
              ]),
            ),
      );
      if (types) {
        ctx.out('');
        ctx.out('TYPES');
        ctx.out(typesTable(types, 70));
      }
      ctx.out('');
      ctx.out('ALERTS');
      ctx.out(
        alerts.length === 0
          ? '(none)'
          : table(
              ['ALERT', 'SEVERITY', 'MESSAGE'],
              alerts.map((a) => [a.name, a.severity, a.message]),
            ),
      );
    } finally {
      await client.close();
    }
  },
});
