import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import type { FlowStep } from '../../src/protocol/flow.js';
import { processingWindow } from '../lib/seed.js';
import { startApiProcess, startRunnerProcess, until, type BenchApi, type Proc } from '../lib/env.js';
import { startFixtureServer, type FixtureServer } from '../lib/fixture-server.js';
import { size, type BenchContext } from '../lib/context.js';
import { BENCH_BROWSER_ARGS, BENCH_CHROMIUM_SANDBOX } from '../lib/browser-args.js';
import { chromiumPath, type PartResult, type Row } from '../lib/report.js';
import { nowMs, ratio, round, summarize } from '../lib/stats.js';

/**
 * Part 3, browser sessions: the same flow (goto, fill, click, extract 50 items) through the whole stack
 * (enqueue → API → runner → Chromium → result) and as a raw playwright-core loop with the same Chromium
 * and flags, at concurrency 1, 2 and 4. Plus enqueue → first flow step (the page request) on an idle runner.
 */

export function benchFlow(base: string, t0?: number): FlowStep[] {
  return [
    { action: 'goto', url: `${base}/list.html${t0 === undefined ? '' : `?t0=${t0}`}` },
    { action: 'fill', selector: '#q', value: 'bench' },
    { action: 'click', selector: '#go' },
    { action: 'extract', selector: '.item', as: 'items', all: true },
  ] as FlowStep[];
}

/** The flow's steps by hand: one fresh context and page per session, as the runner isolates sessions. */
async function rawSession(browser: Browser, base: string): Promise<void> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${base}/list.html`);
    await page.fill('#q', 'bench');
    await page.click('#go');
    const items = page.locator('.item');
    await items.first().waitFor();
    const texts = await items.allTextContents();
    if (texts.length !== 50) throw new Error(`raw flow extracted ${texts.length} items, expected 50`);
  } finally {
    await context.close();
  }
}

async function measureRaw(server: FixtureServer, concurrency: number, n: number): Promise<number> {
  const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'sfw-bench-raw-'));
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [...BENCH_BROWSER_ARGS, `--disk-cache-dir=${cacheDir}`],
    chromiumSandbox: BENCH_CHROMIUM_SANDBOX,
  });
  try {
    await Promise.all(Array.from({ length: concurrency }, () => rawSession(browser, server.url)));
    let next = 0;
    const t0 = nowMs();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          next++;
          await rawSession(browser, server.url);
        }
      }),
    );
    return n / ((nowMs() - t0) / 1000);
  } finally {
    await browser.close();
    await rm(cacheDir, { recursive: true, force: true });
  }
}

export async function runAndWait(
  api: BenchApi,
  runner: Proc,
  steps: FlowStep[][],
  what: string,
): Promise<void> {
  const { items } = await api.client.createSessions(
    steps.map((s) => ({ type: 'flow', input: { steps: s } })),
  );
  const ids = new Set(items.map((s) => s.id));
  await until(
    async () => {
      if (runner.child.exitCode !== null)
        throw new Error(`sfw runner exited: ${runner.output().slice(-2000)}`);
      const { items: done } = await api.client.listSessions({
        type: 'flow',
        status: 'succeeded',
        limit: 500,
      });
      const failed = await api.client.listSessions({ type: 'flow', status: 'failed', limit: 5 });
      const errored = await api.client.listSessions({ type: 'flow', status: 'error', limit: 5 });
      const bad = [...failed.items, ...errored.items].filter((s) => ids.has(s.id));
      if (bad[0]) throw new Error(`${what}: session ${bad[0].status}: ${bad[0].errorMessage ?? ''}`);
      return done.filter((s) => ids.has(s.id)).length === ids.size;
    },
    what,
    60_000 + steps.length * 2000,
    100,
  );
}

async function measureOurs(
  ctx: BenchContext,
  server: FixtureServer,
  concurrency: number,
  n: number,
  firstStepN: number,
): Promise<{ perSec: number; firstStep?: ReturnType<typeof summarize> }> {
  const { url, db } = await ctx.pg.sessionsDatabase(`browser_c${concurrency}`);
  const api = await startApiProcess(url);
  const runner = startRunnerProcess({
    apiUrl: api.url,
    runnerId: `browser-c${concurrency}`,
    maxConcurrency: concurrency,
  });
  try {
    // Warm-up: the runner launches Chromium on its first browser session.
    await runAndWait(
      api,
      runner,
      Array.from({ length: concurrency }, () => benchFlow(server.url)),
      'warm-up flows',
    );
    const since = new Date();
    await runAndWait(
      api,
      runner,
      Array.from({ length: n }, () => benchFlow(server.url)),
      `${n} flows`,
    );
    const w = await processingWindow(db, 'flow', since);
    const perSec = n / (((w.lastFinishedAt?.getTime() ?? 0) - (w.firstClaimedAt?.getTime() ?? 0)) / 1000);
    if (firstStepN === 0) return { perSec };
    // Enqueue → first flow step: one session at a time on the idle, warm runner.
    const before = server.arrivals.length;
    for (let i = 0; i < firstStepN; i++) {
      await new Promise((r) => setTimeout(r, 20 + Math.random() * 20));
      const s = await api.client.createSession({
        type: 'flow',
        input: { steps: benchFlow(server.url, nowMs()) },
      });
      const done = await api.client.waitUntilDone(s.id, { timeoutMs: 30_000 });
      if (done.status !== 'succeeded')
        throw new Error(`first-step flow ${done.status}: ${done.errorMessage ?? ''}`);
    }
    return { perSec, firstStep: summarize(server.arrivals.slice(before)) };
  } finally {
    await runner.stop();
    await api.stop();
    await db.end();
  }
}

export async function runBrowser(ctx: BenchContext): Promise<PartResult> {
  const levels = ctx.smoke ? [1] : [1, 2, 4];
  const server = await startFixtureServer();
  const rows: Row[] = [];
  const ratios: Record<string, number> = {};
  let firstStep: ReturnType<typeof summarize> | undefined;
  try {
    for (const c of levels) {
      const n = size(ctx, 40 * c, 4 * c);
      // Raw runs half before and half after sfw, so a change in the machine's load hits both sides alike.
      const half = Math.max(c, Math.round(n / 2));
      ctx.log(`browser: concurrency ${c}: raw playwright-core, ${half} sessions`);
      const rawA = await measureRaw(server, c, half);
      ctx.log(`browser: concurrency ${c}: sfw (API + runner), ${n} sessions`);
      const ours = await measureOurs(ctx, server, c, n, c === 1 ? size(ctx, 30, 3) : 0);
      ctx.log(`browser: concurrency ${c}: raw playwright-core again, ${half} sessions`);
      const rawB = await measureRaw(server, c, half);
      const raw = (2 * half) / (half / rawA + half / rawB);
      if (ours.firstStep) firstStep = ours.firstStep;
      rows.push({
        concurrency: c,
        n,
        'raw playwright sessions/s': round(raw, 2),
        'raw before / after': `${round(rawA, 2)} / ${round(rawB, 2)}`,
        'sfw sessions/s': round(ours.perSec, 2),
        'sfw / raw': ratio(ours.perSec, raw),
      });
      ratios[`sfw / raw playwright at concurrency ${c}`] = ratio(ours.perSec, raw);
    }
  } finally {
    await server.close();
  }
  const notes = [
    'flow: goto a local page, fill, click, extract 50 items; one fresh browser context per session on both sides',
    `Chromium flags on both sides: ${BENCH_BROWSER_ARGS.join(' ')}`,
    'sfw is timed from the first claim to the last finish of the batch (after a warm-up), raw from its first to its last session',
    "the runner's browser pool prepares the next context and page while a session runs; the raw loop opens them inline, as a plain script does",
    'raw runs half its sessions before sfw and half after (each with its own warm browser); its rate is over both halves',
  ];
  if (firstStep)
    notes.push(
      `enqueue → first flow step (page request), idle warm runner: p50 ${firstStep.p50} ms, p95 ${firstStep.p95} ms, p99 ${firstStep.p99} ms (n=${firstStep.n})`,
    );
  return {
    part: 'browser',
    rows,
    ratios: { ...ratios, ...(firstStep ? { 'enqueue → first step p50 ms': firstStep.p50 } : {}) },
    notes,
    details: { firstStep },
  };
}
