import type { RetentionTotals } from '../store/retention.js';
import { FINAL_STATUSES } from '../store/retention.js';
import type { Exposition } from './metrics.js';
import type { RetentionSettings } from './retention.js';

/** What retention removed, fleet-wide (read from the database), and this replica's settings. */
export function writeRetention(
  out: Exposition,
  t: RetentionTotals,
  settings: RetentionSettings | undefined,
): void {
  out.family(
    'sfw_retention_pruned_sessions_total',
    'counter',
    'Finished sessions deleted by retention, by final status',
  );
  for (const s of FINAL_STATUSES)
    out.sample('sfw_retention_pruned_sessions_total', { status: s }, t.pruned[s]);
  out.family(
    'sfw_retention_pruned_artifact_bytes_total',
    'counter',
    'Artifact bytes removed by retention: those of deleted sessions and of swept orphan folders',
  );
  out.sample('sfw_retention_pruned_artifact_bytes_total', {}, t.artifactBytes);
  out.family(
    'sfw_retention_orphan_folders_total',
    'counter',
    'Artifact folders removed because no session row had them (older than an hour)',
  );
  out.sample('sfw_retention_orphan_folders_total', {}, t.orphanFolders);
  out.family(
    'sfw_retention_last_run_timestamp_seconds',
    'gauge',
    'When a retention pass last completed on any API replica, as a Unix time (0: never)',
  );
  out.sample('sfw_retention_last_run_timestamp_seconds', {}, t.lastRunAt ? t.lastRunAt.getTime() / 1000 : 0);
  if (!settings) return;
  out.family(
    'sfw_retention_seconds',
    'gauge',
    'How long this API replica keeps finished sessions, by final status (0: kept forever)',
  );
  for (const s of FINAL_STATUSES) out.sample('sfw_retention_seconds', { status: s }, settings[s] / 1000);
}
