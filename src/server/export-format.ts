import { EXPORT_COLUMNS, type ExportFormat } from '@session-framework/sdk';
import type { ExportRow } from '../store/batches.js';

/**
 * An export's rows as text, chunk by chunk: JSON lines (one ExportedSession per line) or CSV (RFC 4180:
 * a header line, CRLF line ends, a field holding a comma, a quote, CR or LF quoted with its quotes doubled;
 * the result as its JSON text, tags joined by `;`, null as an empty field).
 */

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** One session's values in EXPORT_COLUMNS order; the result stays the JSON text Postgres gave. */
function values(r: ExportRow): (string | number | null)[] {
  return [
    r.id,
    r.type,
    r.status,
    r.tags.join(';'),
    r.priority,
    r.created_at.toISOString(),
    r.run_at.toISOString(),
    iso(r.claimed_at),
    iso(r.finished_at),
    r.attempt,
    r.max_attempts,
    r.claimed_by,
    r.result,
    r.error_message,
  ];
}

function jsonLine(r: ExportRow): string {
  const head = JSON.stringify({
    id: r.id,
    type: r.type,
    status: r.status,
    tags: r.tags,
    priority: r.priority,
    createdAt: r.created_at.toISOString(),
    runAt: r.run_at.toISOString(),
    claimedAt: iso(r.claimed_at),
    finishedAt: iso(r.finished_at),
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    claimedBy: r.claimed_by,
  });
  // The stored JSON text goes in as it is: not parsed and written again.
  return `${head.slice(0, -1)},"result":${r.result ?? 'null'},"errorMessage":${JSON.stringify(r.error_message)}}\n`;
}

export function csvField(v: string | number | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

const csvLine = (fields: (string | number | null)[]) => `${fields.map(csvField).join(',')}\r\n`;

export const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  jsonl: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
};

/** The export's text, one string per chunk of rows (the CSV header first). */
export async function* exportText(
  chunks: AsyncIterable<ExportRow[]>,
  format: ExportFormat,
): AsyncGenerator<string, void, undefined> {
  if (format === 'csv') yield csvLine([...EXPORT_COLUMNS]);
  for await (const rows of chunks) {
    let text = '';
    for (const r of rows) text += format === 'csv' ? csvLine(values(r)) : jsonLine(r);
    yield text;
  }
}
