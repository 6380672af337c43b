import { ApiError, type RetentionView } from '@session-framework/sdk';
import { CLIENT_CONFIG, clientFrom } from '../client.js';
import { JSON_FLAG, defineCommand, table } from '../command.js';
import { typesTable } from './types.js';

/** How long a duration is, in its largest whole unit (30 d, 12 h, 90 min); 0 keeps forever. */
function span(ms: number): string {
  if (ms === 0) return 'kept';
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['min', 60_000],
  ] as const)
    if (ms % size === 0) return `${ms / size} ${unit}`;
  return `${ms} ms`;
}

/** `succeeded 30 d · failed 90 d · error 30 d · cancelled kept   pruned 1234, last run 12 s ago`. */
export function retentionLine(r: RetentionView, now = Date.now()): string {
  const kept = (Object.keys(r.retentionMs) as (keyof RetentionView['retentionMs'])[])
    .map((s) => `${s} ${span(r.retentionMs[s])}`)
    .join(' · ');
  const pruned = Object.values(r.pruned).reduce((n, v) => n + v, 0);
  const last =
    r.lastRunAt === null
      ? 'never'
      : `${Math.max(0, Math.round((now - Date.parse(r.lastRunAt)) / 1000))} s ago`;
  return `${kept}   pruned ${pruned}, last run ${last}`;
}

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
      const [queue, runners, alerts, types, retention] = await Promise.all([
        client.queue(),
        client.runners(),
        client.alerts(),
        // An API older than type registration answers 404: no types to show.
        client.types().catch((err: unknown) => {
          if (err instanceof ApiError && err.status === 404) return undefined;
          throw err;
        }),
        client.retention().catch((err: unknown) => {
          if (err instanceof ApiError && err.status === 404) return undefined;
          throw err;
        }),
      ]);
      if (ctx.flags.json) {
        ctx.out(
          JSON.stringify({
            queue,
            runners,
            alerts,
            ...(types ? { types } : {}),
            ...(retention ? { retention } : {}),
          }),
        );
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
      if (retention) {
        ctx.out('');
        ctx.out(`RETENTION  ${retentionLine(retention)}`);
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
