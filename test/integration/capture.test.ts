import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreateSessionBody, SessionView } from '@session-framework/sdk';
import { BrowserPool } from '../../src/browser/pool.js';
import { main } from '../../src/cli/main.js';
import { findVideoRecorder } from '../../src/browser/video.js';
import {
  DEFAULT_CAPTURE_SETTINGS,
  videoRecorderFor,
  type CaptureSettings,
} from '../../src/sessions/capture.js';
import { executeSession } from '../../src/sessions/execute.js';
import { flowSessionType } from '../../src/sessions/registry.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { startRunner, type InProcessRunner } from '../helpers/runner.js';

/**
 * HAR, video and downloads end to end: a real runner runs flows in Chromium against the fixture site and
 * uploads what the session's artifacts options keep to a real API, read back over HTTP.
 */

const recorder = await findVideoRecorder();
if (recorder.kind === 'none')
  console.warn(`capture.test: video checks skipped: ${recorder.reason} (CI installs Debian's ffmpeg)`);
const EBML = '1a45dfa3';

let api: TestApi;
let pool: BrowserPool;
let site: FixtureServer;
let runner: InProcessRunner | undefined;

beforeAll(async () => {
  const executablePath = await requireChromium();
  api = await startTestApi('capture');
  site = await startFixtureServer();
  pool = new BrowserPool({ executablePath });
  await pool.start();
});

afterAll(async () => {
  await runner?.stop();
  await pool?.close();
  await site?.close();
  await api?.stop();
});

async function useRunner(runnerId: string, capture: CaptureSettings): Promise<void> {
  await runner?.stop();
  const flow = flowSessionType();
  runner = await startRunner(api, {
    runnerId,
    maxConcurrency: 2,
    types: [{ name: 'flow', browser: true }],
    executor: (session, ctx) =>
      executeSession({
        session,
        type: flow,
        pool,
        signal: ctx.signal,
        abort: (reason) => ctx.abort(reason),
        upload: (name, data, contentType) => ctx.upload(name, data, contentType),
        log: ctx.log,
        capture,
      }),
  });
}

const page = (name: string) => `${site.url}/pages/${name}`;

async function runFlow(steps: unknown[], artifacts: CreateSessionBody['artifacts']): Promise<SessionView> {
  const created = await api.client.createSession({
    type: 'flow',
    input: { steps },
    artifacts,
    timeoutMs: 30_000,
  });
  const done = await api.client.waitUntilDone(created.id, { timeoutMs: 60_000 });
  expect(['succeeded', 'failed']).toContain(done.status);
  return done;
}

/** The first test's session: the dashboard's session view shows its captures. */
let captured: SessionView | undefined;

const names = (s: SessionView) => s.artifacts.map((a) => a.name).sort();
const warnings = (s: SessionView) =>
  ((s.result as { warnings?: string[] } | null)?.warnings ?? []).join('\n');

describe('with ffmpeg where the machine has it', () => {
  beforeAll(() => useRunner('capture-runner', DEFAULT_CAPTURE_SETTINGS));

  it('keeps session.har, video.webm and each download, fetched back by name', async () => {
    const s = await runFlow(
      [
        { action: 'goto', url: page('downloads.html') },
        { action: 'click', selector: '#small' },
        { action: 'waitFor', ms: 700 },
      ],
      { har: 'on', video: recorder.kind === 'none' ? 'off' : 'on', downloads: true },
    );
    expect(s.status, s.errorMessage ?? '').toBe('succeeded');
    expect(s.artifactOptions).toMatchObject({ har: 'on', downloads: true });

    const har = await api.client.getArtifact(s.id, 'session.har');
    expect(har.contentType).toBe('application/json');
    const log = (
      JSON.parse(har.data.toString('utf8')) as { log: { entries: { request: { url: string } }[] } }
    ).log;
    expect(log.entries.map((e) => e.request.url)).toContain(page('downloads.html'));

    const download = await api.client.getArtifact(s.id, 'download-1-monthly_report_May_.csv');
    expect(download.data).toEqual(Buffer.alloc(2048, 'x'));

    if (recorder.kind !== 'none') {
      const video = await api.client.getArtifact(s.id, 'video.webm');
      expect(video.contentType).toBe('video/webm');
      expect(video.data.length).toBeGreaterThan(0);
      expect(video.data.subarray(0, 4).toString('hex')).toBe(EBML);
    }
    expect(warnings(s)).toBe('');
    captured = s;
  });

  it("the dashboard's session view plays the video and lists the HAR and the download", async () => {
    const s = captured;
    if (!s) throw new Error('the capture test above did not run');
    const lease = await pool.acquire();
    try {
      const view = lease.page;
      await view.goto(`${api.url}/#/sessions/${s.id}`);
      const files = view.locator('ul.files');
      await files.getByText('session.har').waitFor({ timeout: 15_000 });
      expect(await files.textContent()).toContain('download-1-monthly_report_May_.csv');
      expect(await files.textContent()).toContain('Import HAR');
      if (recorder.kind !== 'none') {
        const video = view.locator('video[data-artifact-video="video.webm"]');
        await view.waitForFunction(
          () => {
            const v = document.querySelector('video[data-artifact-video]');
            return v instanceof HTMLVideoElement && v.src.startsWith('blob:') && v.readyState >= 1;
          },
          undefined,
          { timeout: 15_000 },
        );
        expect(await video.evaluate((v: HTMLVideoElement) => v.videoWidth)).toBe(800);
        expect(await files.textContent()).not.toContain('video.webm');
      }
    } finally {
      await lease.release();
    }
  });

  it('keeps on-failure captures of a failing flow and drops those of a passing one', async () => {
    const video = recorder.kind === 'none' ? 'off' : 'on-failure';
    const failing = await runFlow(
      [
        { action: 'goto', url: page('simple.html') },
        { action: 'assert', selector: '#missing', visible: true, timeoutMs: 500 },
      ],
      { har: 'on-failure', video, screenshot: 'off' },
    );
    expect(failing.status).toBe('failed');
    expect(names(failing)).toEqual(
      recorder.kind === 'none' ? ['session.har'] : ['session.har', 'video.webm'],
    );

    const passing = await runFlow([{ action: 'goto', url: page('simple.html') }], {
      har: 'on-failure',
      video,
      screenshot: 'off',
    });
    expect(passing.status).toBe('succeeded');
    expect(names(passing)).toEqual([]);
  });

  it('sfw enqueue takes --har, --video and --downloads; sfw artifacts get fetches the captures', async () => {
    const env = { API_BASE_URL: api.url };
    const steps = [
      { action: 'goto', url: page('downloads.html') },
      { action: 'click', selector: '#small' },
      { action: 'waitFor', ms: 700 },
    ];
    const video = recorder.kind === 'none' ? 'off' : 'on';
    const argv = ['enqueue', 'flow', '--input', JSON.stringify({ steps }), '--har', 'on', '--video', video];
    expect(await main([...argv, '--downloads'], env)).toBe(0);
    const [newest] = (await api.client.listSessions({ fields: [], limit: 1 })).items;
    expect(newest).toBeDefined();
    const s = await api.client.waitUntilDone(newest!.id, { timeoutMs: 60_000 });
    expect(s.artifactOptions).toMatchObject({ har: 'on', video, downloads: true });
    expect(s.status, s.errorMessage ?? '').toBe('succeeded');

    const dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-capture-cli-'));
    try {
      const wanted = [
        'session.har',
        'download-1-monthly_report_May_.csv',
        ...(video === 'on' ? ['video.webm'] : []),
      ];
      for (const name of wanted) {
        const out = path.join(dir, name);
        expect(await main(['artifacts', 'get', s.id, name, '-o', out], env), name).toBe(0);
        expect(await readFile(out)).toEqual((await api.client.getArtifact(s.id, name)).data);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // A bad mode is the CLI's own message (exit 2), before any request.
    expect(await main(['enqueue', 'flow', '--har', 'always'], env)).toBe(2);
    expect(await main(['enqueue', 'flow', '--video', 'yes'], env)).toBe(2);
  });

  it('waits for a download still coming in when the session ends', async () => {
    const s = await runFlow(
      [
        { action: 'goto', url: page('downloads.html') },
        { action: 'click', selector: '#slow' },
        { action: 'waitFor', ms: 300 },
      ],
      { har: 'on', downloads: true, screenshot: 'off' },
    );
    expect(s.status, s.errorMessage ?? '').toBe('succeeded');
    expect(warnings(s)).toBe('');
    expect(names(s)).toEqual(['download-1-slow.txt', 'session.har']);
    expect((await api.client.getArtifact(s.id, 'download-1-slow.txt')).data).toEqual(Buffer.alloc(1000, 'x'));
  });

  it('refuses bad capture options with 400 at their path and stores nothing', async () => {
    const before = (await api.client.listSessions({ fields: [] })).items.length;
    const bad: [unknown, string][] = [
      [{ har: 'always' }, 'body.artifacts.har'],
      [{ video: 'yes' }, 'body.artifacts.video'],
      [{ downloads: 'true' }, 'body.artifacts.downloads'],
      [{ audio: 'on' }, 'body.artifacts'],
    ];
    for (const [artifacts, path] of bad) {
      const res = await fetch(`${api.url}/v1/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'flow', input: { steps: [] }, artifacts }),
      });
      expect(res.status, JSON.stringify(artifacts)).toBe(400);
      expect(JSON.stringify(await res.json())).toContain(path);
    }
    const batch = await fetch(`${api.url}/v1/sessions/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        sessions: [{ type: 'flow', input: { steps: [] }, artifacts: { video: 'always' } }],
      }),
    });
    expect(batch.status).toBe(400);
    expect(JSON.stringify(await batch.json())).toContain('body.sessions.0.artifacts.video');
    expect((await api.client.listSessions({ fields: [] })).items.length).toBe(before);
  });
});

describe('with a small capture limit and no ffmpeg', () => {
  beforeAll(() =>
    useRunner('capture-runner-limited', {
      maxBytes: 100_000,
      maxDownloads: 20,
      videoRecorder: videoRecorderFor('/nonexistent/ffmpeg'),
    }),
  );

  it('drops a download over the limit with a warning, keeps the other, and still succeeds', async () => {
    const s = await runFlow(
      [
        { action: 'goto', url: page('downloads.html') },
        { action: 'click', selector: '#small' },
        { action: 'click', selector: '#big' },
        { action: 'waitFor', ms: 1000 },
      ],
      { downloads: true },
    );
    expect(s.status, s.errorMessage ?? '').toBe('succeeded');
    expect(names(s).filter((n) => n.startsWith('download-'))).toHaveLength(1);
    const kept = names(s).find((n) => n.startsWith('download-'));
    const dropped =
      kept === 'download-1-monthly_report_May_.csv' ? 'download-2-archive.bin' : 'download-1-archive.bin';
    expect(warnings(s)).toContain(`${dropped} dropped: over the 0.1 MiB limit (MAX_CAPTURE_BYTES)`);
  });

  it('runs a session asking for video without ffmpeg, with a warning in its result', async () => {
    const s = await runFlow([{ action: 'goto', url: page('simple.html') }], {
      video: 'on',
      screenshot: 'off',
    });
    expect(s.status).toBe('succeeded');
    const warning = 'video needs ffmpeg: FFMPEG_PATH=/nonexistent/ffmpeg is not an executable file';
    expect(warnings(s)).toContain(warning);
    // No video; the warning is in console.log too.
    expect(names(s)).toEqual(['console.log']);
    expect((await api.client.getArtifact(s.id, 'console.log')).data.toString()).toContain(warning);
  });
});

describe("Playwright's own ffmpeg", () => {
  it.skipIf(recorder.kind !== 'screencast')(
    'records with recordVideo when an ffmpeg is where playwright-core looks for its own',
    async () => {
      if (recorder.kind !== 'screencast') return;
      // A browsers folder holding "Playwright's ffmpeg" (the system's, linked), read by playwright-core
      // when it loads: in a process of its own.
      const browsers = await mkdtemp(path.join(os.tmpdir(), 'sfw-pw-browsers-'));
      try {
        const pkg = createRequire(import.meta.url).resolve('playwright-core/package.json');
        const { browsers: list } = JSON.parse(
          await readFile(path.join(path.dirname(pkg), 'browsers.json'), 'utf8'),
        ) as {
          browsers: { name: string; revision: string }[];
        };
        const dir = path.join(browsers, `ffmpeg-${list.find((b) => b.name === 'ffmpeg')!.revision}`);
        await mkdir(dir);
        await symlink(recorder.ffmpeg, path.join(dir, 'ffmpeg-linux'));
        const child = fileURLToPath(new URL('../fixtures/capture-child.ts', import.meta.url));
        const { stdout } = await promisify(execFile)(
          process.execPath,
          ['--import', 'tsx', child, page('simple.html')],
          {
            env: { ...process.env, PLAYWRIGHT_BROWSERS_PATH: browsers },
            timeout: 90_000,
          },
        );
        const got = JSON.parse(stdout.trim().split('\n').pop()!) as {
          outcome: { status: string };
          recorder: { kind: string };
          artifacts: Record<string, { head: string; size: number }>;
        };
        expect(got.recorder.kind).toBe('playwright');
        expect(got.outcome.status).toBe('succeeded');
        expect(got.artifacts['video.webm']?.head).toBe(EBML);
        expect(got.artifacts['video.webm']?.size).toBeGreaterThan(0);
      } finally {
        await rm(browsers, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
