import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { CreateSessionBody, SessionView } from '@session-framework/sdk';
import { findVideoRecorder } from '../../src/browser/video.js';
import { startApiProcess, startRunnerProcess, type BenchApi, type Proc } from '../lib/env.js';
import { startFixtureServer } from '../lib/fixture-server.js';
import { size, type BenchContext } from '../lib/context.js';
import type { PartResult, Row } from '../lib/report.js';
import { ratio, round } from '../lib/stats.js';
import { benchFlow } from './browser.js';

/**
 * Capture costs: the browser part's flow through the whole stack (sfw api + sfw runner + Chromium) with
 * each capture on alone and all at once, against none, in one run. The variants take turns in rounds
 * (none, screenshot, trace, har, video, all, then again) so a change in the machine's load hits every
 * variant alike; each variant's rate is its sessions over the sum of its rounds' processing windows
 * (first claim to last finish), and its bytes are what its sessions stored as artifacts.
 */

const VARIANTS: Record<string, CreateSessionBody['artifacts']> = {
  none: { screenshot: 'off', trace: 'off' },
  screenshot: { screenshot: 'always', trace: 'off' },
  trace: { screenshot: 'off', trace: 'always' },
  har: { screenshot: 'off', trace: 'off', har: 'on' },
  video: { screenshot: 'off', trace: 'off', video: 'on' },
  all: { screenshot: 'always', trace: 'always', har: 'on', video: 'on', downloads: true },
};

interface Tally {
  sessions: number;
  seconds: number;
  bytes: number;
  byArtifact: Record<string, number>;
  warnings: Set<string>;
}

async function runRound(
  api: BenchApi,
  runner: Proc,
  base: string,
  artifacts: CreateSessionBody['artifacts'],
  n: number,
): Promise<SessionView[]> {
  const { items } = await api.client.createSessions(
    Array.from({ length: n }, () => ({ type: 'flow', input: { steps: benchFlow(base) }, artifacts })),
  );
  const done: SessionView[] = [];
  for (const s of items) {
    if (runner.child.exitCode !== null) throw new Error(`sfw runner exited: ${runner.output().slice(-2000)}`);
    const v = await api.client.waitUntilDone(s.id, { timeoutMs: 120_000 });
    if (v.status !== 'succeeded') throw new Error(`capture flow ${v.status}: ${v.errorMessage ?? ''}`);
    done.push(v);
  }
  return done;
}

/** First claim to last finish of the round, in seconds. */
function window(views: SessionView[]): number {
  const claimed = Math.min(...views.map((v) => Date.parse(v.claimedAt ?? '')));
  const finished = Math.max(...views.map((v) => Date.parse(v.finishedAt ?? '')));
  return (finished - claimed) / 1000;
}

export async function runCapture(ctx: BenchContext): Promise<PartResult> {
  const concurrency = 2;
  const rounds = ctx.smoke ? 1 : 4;
  const perRound = size(ctx, 10, 2);
  const recorder = await findVideoRecorder();
  const server = await startFixtureServer();
  const artifactsDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-bench-capture-'));
  const { url, db } = await ctx.pg.sessionsDatabase('capture');
  const api = await startApiProcess(url, { ARTIFACTS_DIR: artifactsDir });
  const runner = startRunnerProcess({ apiUrl: api.url, runnerId: 'capture', maxConcurrency: concurrency });
  const tallies = new Map<string, Tally>(
    Object.keys(VARIANTS).map((k) => [
      k,
      { sessions: 0, seconds: 0, bytes: 0, byArtifact: {}, warnings: new Set<string>() },
    ]),
  );
  try {
    // Warm-up: Chromium launches, the video recorder is found, every capture path runs once.
    for (const artifacts of Object.values(VARIANTS))
      await runRound(api, runner, server.url, artifacts, concurrency);
    for (let r = 0; r < rounds; r++) {
      for (const [name, artifacts] of Object.entries(VARIANTS)) {
        ctx.log(`capture: round ${r + 1}/${rounds}: ${name}, ${perRound} sessions`);
        const views = await runRound(api, runner, server.url, artifacts, perRound);
        const t = tallies.get(name)!;
        t.sessions += views.length;
        t.seconds += window(views);
        for (const v of views) {
          for (const a of v.artifacts) {
            t.bytes += a.size;
            const kind = a.name.startsWith('download-') ? 'download' : a.name;
            t.byArtifact[kind] = (t.byArtifact[kind] ?? 0) + a.size;
          }
          for (const w of (v.result as { warnings?: string[] } | null)?.warnings ?? []) t.warnings.add(w);
        }
      }
    }
  } finally {
    await runner.stop();
    await api.stop();
    await db.end();
    await server.close();
    await rm(artifactsDir, { recursive: true, force: true });
  }

  const none = tallies.get('none')!;
  const noneRate = none.sessions / none.seconds;
  const noneBytes = none.bytes / none.sessions;
  const rows: Row[] = [];
  const ratios: Record<string, number> = {};
  for (const [name, t] of tallies) {
    const rate = t.sessions / t.seconds;
    const bytes = t.bytes / t.sessions;
    rows.push({
      capture: name,
      n: t.sessions,
      'sessions/s': round(rate, 2),
      'vs none': ratio(rate, noneRate),
      'bytes/session': Math.round(bytes),
      'extra bytes/session': Math.round(bytes - noneBytes),
      artifacts: Object.entries(t.byArtifact)
        .map(([k, b]) => `${k} ${Math.round(b / t.sessions)}`)
        .join(', '),
    });
    if (name !== 'none') ratios[`${name} sessions/s / none`] = ratio(rate, noneRate);
  }
  const warnings = [...tallies.values()].flatMap((t) => [...t.warnings]);
  return {
    part: 'capture',
    rows,
    ratios,
    notes: [
      'flow: goto a local page, fill, click, extract 50 items (the browser part\'s), one fresh context per session; "none" keeps no artifact at all (screenshot and trace off)',
      `concurrency ${concurrency} (one sfw runner), ${rounds} rounds of ${perRound} sessions per variant taking turns, after a warm-up of every variant`,
      `video: ${recorder.kind === 'none' ? `not recorded (${recorder.reason})` : `${recorder.kind} via ${recorder.ffmpeg}`}`,
      'har: Playwright recordHar with bodies left out; screenshot: final.png; trace: screenshots and snapshots; all: every capture at once (the flow downloads nothing)',
      'bytes: what the sessions stored as artifacts on the API (artifacts column: average bytes per session by artifact)',
      ...(warnings.length > 0 ? [`warnings in results: ${warnings.join('; ')}`] : []),
    ],
    details: Object.fromEntries([...tallies].map(([k, t]) => [k, { ...t, warnings: [...t.warnings] }])),
  };
}
