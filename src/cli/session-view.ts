import type { SessionView } from '../protocol/schemas.js';
import { table } from './command.js';

/** One session as `sfw sessions <id>` and `sfw run` print it: the state, the steps, the history, the files. */

type StepResult = { action?: unknown; ok?: unknown; ms?: unknown; error?: unknown; warning?: unknown };

const cut = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** What a flow step acted on: its URL, selector, key, name or expression, and where it kept a value. */
export function stepTarget(step: unknown): string {
  if (!step || typeof step !== 'object') return '';
  const s = step as Record<string, unknown>;
  const text = (k: string): string | undefined => {
    const v = s[k];
    return typeof v === 'string' ? v : undefined;
  };
  const into = text('as') === undefined ? '' : ` → ${text('as')}`;
  switch (s.action) {
    case 'goto':
      return text('url') ?? '';
    case 'press':
      return `${text('key') ?? ''}${text('selector') === undefined ? '' : ` on ${text('selector')}`}`;
    case 'waitFor':
      return text('selector') ?? (typeof s.ms === 'number' ? `${s.ms} ms` : '');
    case 'screenshot':
      return text('name') ?? '';
    case 'evaluate':
      return `${cut(text('expression') ?? '', 60)}${into}`;
    default:
      return `${text('selector') ?? ''}${into}`;
  }
}

function isFlowResult(r: unknown): r is { extracted?: unknown; steps: StepResult[]; warnings?: unknown } {
  return typeof r === 'object' && r !== null && Array.isArray((r as { steps?: unknown }).steps);
}

/** What a session does with named states, and what became of its save. */
function stateLine(s: SessionView): string {
  const parts: string[] = [];
  if (s.state?.use !== undefined) parts.push(`starts from ${s.state.use}`);
  if (s.state?.save !== undefined) {
    const save = s.stateSave;
    parts.push(
      `saves ${s.state.save}${
        !save
          ? ''
          : save.saved
            ? ` (version ${save.version})`
            : ` (skipped: version ${save.version}, newer, kept)`
      }`,
    );
  }
  return parts.join('; ');
}

export function printSession(s: SessionView, out: (line: string) => void): void {
  out(`session ${s.id}: ${s.status} (attempt ${s.attempt} of ${s.maxAttempts})`);
  out(
    [
      `type ${s.type}`,
      `priority ${s.priority}`,
      ...(s.claimedBy ? [`runner ${s.claimedBy}`] : []),
      `created ${s.createdAt}`,
      ...(s.finishedAt ? [`finished ${s.finishedAt}`] : []),
    ].join(' · '),
  );
  if (s.scheduleId) out(`made by schedule ${s.scheduleId} for ${s.scheduledFor ?? '?'}`);
  if (s.state) out(`state: ${stateLine(s)}`);
  if (s.errorMessage) out(`error: ${s.errorMessage}`);
  const inputSteps = (s.input as { steps?: unknown } | null)?.steps;
  if (isFlowResult(s.result)) {
    const planned: unknown[] = Array.isArray(inputSteps) ? inputSteps : [];
    out('steps:');
    out(
      indent(
        table(
          ['#', 'ACTION', 'TARGET', 'RESULT', 'MS', 'NOTE'],
          s.result.steps.map((r, i) => [
            i + 1,
            typeof r.action === 'string' ? r.action : '',
            cut(stepTarget(planned[i]), 70),
            r.ok === true ? 'ok' : 'failed',
            typeof r.ms === 'number' ? r.ms : '',
            cut(typeof r.error === 'string' ? r.error : typeof r.warning === 'string' ? r.warning : '', 80),
          ]),
        ),
      ),
    );
    out(`extracted: ${JSON.stringify(s.result.extracted ?? {}, null, 2)}`);
    if (Array.isArray(s.result.warnings))
      for (const w of s.result.warnings as unknown[]) out(`warning: ${String(w)}`);
  } else if (s.result !== null && s.result !== undefined) {
    out(`result: ${JSON.stringify(s.result, null, 2)}`);
  }
  if (s.attempts.length > 0) {
    out('attempts:');
    out(
      indent(
        table(
          ['ATTEMPT', 'STATUS', 'RUNNER', 'STARTED', 'FINISHED', 'ERROR'],
          s.attempts.map((a) => [
            a.attempt,
            a.status,
            a.runnerId,
            a.startedAt,
            a.finishedAt,
            cut(a.errorMessage ?? '', 80),
          ]),
        ),
      ),
    );
  }
  if (s.artifacts.length > 0) {
    out('artifacts:');
    out(
      indent(
        table(
          ['NAME', 'BYTES', 'DOWNLOAD'],
          s.artifacts.map((a) => [a.name, a.size, `sfw artifacts get ${s.id} ${a.name}`]),
        ),
      ),
    );
  }
}

const indent = (text: string) =>
  text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
