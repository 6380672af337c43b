import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import type { CDPSession, Page } from 'playwright-core';
import { playwrightCacheRoots } from './chromium.js';

/**
 * How a page's video is recorded, found once per process:
 * - `playwright`: Playwright's own ffmpeg build is installed (`npx playwright install ffmpeg`), where
 *   playwright-core looks for it; the context records with `recordVideo`.
 * - `screencast`: another ffmpeg with libvpx (FFMPEG_PATH, else `ffmpeg` on PATH, e.g. Debian's
 *   `apt-get install ffmpeg`): Playwright cannot be pointed at it, so the page's CDP screencast frames
 *   are piped into it, encoded as VP8 in WebM.
 * - `none`: no ffmpeg; a session asking for video runs without one and its result says why.
 */
export type VideoRecorder =
  | { kind: 'playwright'; ffmpeg: string }
  | { kind: 'screencast'; ffmpeg: string }
  | { kind: 'none'; reason: string };

type Env = Record<string, string | undefined>;

export interface FindVideoOptions {
  /** FFMPEG_PATH: this ffmpeg, over Playwright's. */
  ffmpegPath?: string | undefined;
  env?: Env;
  platform?: NodeJS.Platform;
  homedir?: string;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const PLAYWRIGHT_FFMPEG: Partial<Record<NodeJS.Platform, string>> = {
  linux: 'ffmpeg-linux',
  darwin: 'ffmpeg-mac',
  win32: 'ffmpeg-win64.exe',
};

/** Where playwright-core looks for its ffmpeg: <browsers folder>/ffmpeg-<revision of its browsers.json>/ffmpeg-<platform>. */
export function playwrightFfmpegPaths(env: Env, platform: NodeJS.Platform, home: string): string[] {
  const exe = PLAYWRIGHT_FFMPEG[platform];
  if (!exe) return [];
  let revision: string | undefined;
  try {
    const pkg = createRequire(import.meta.url).resolve('playwright-core/package.json');
    const browsers = JSON.parse(readFileSync(join(dirname(pkg), 'browsers.json'), 'utf8')) as {
      browsers: { name: string; revision: string }[];
    };
    revision = browsers.browsers.find((b) => b.name === 'ffmpeg')?.revision;
  } catch {
    return [];
  }
  if (revision === undefined) return [];
  return playwrightCacheRoots(env, platform, home).map((root) => join(root, `ffmpeg-${revision}`, exe));
}

function onPath(env: Env, platform: NodeJS.Platform): string | undefined {
  const names = platform === 'win32' ? ['ffmpeg.exe'] : ['ffmpeg'];
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean))
    for (const name of names) if (executable(join(dir, name))) return join(dir, name);
  return undefined;
}

/** Whether `ffmpeg` can encode VP8 (libvpx); a failure to run says why. */
function hasVp8(ffmpeg: string): Promise<true | string> {
  return new Promise((resolve) => {
    let out = '';
    let child: ChildProcess;
    try {
      child = spawn(ffmpeg, ['-hide_banner', '-encoders'], { stdio: ['ignore', 'pipe', 'ignore'] });
    } catch (err) {
      resolve(`${ffmpeg} did not run: ${(err as Error).message}`);
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve(`${ffmpeg} did not run: ${err.message}`);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (/\blibvpx\b/.test(out)) resolve(true);
      else
        resolve(code === 0 ? `${ffmpeg} has no VP8 encoder (libvpx)` : `${ffmpeg} -encoders exited ${code}`);
    });
  });
}

const HELP =
  'install Playwright\'s ("npx playwright install ffmpeg"), a system one ("apt-get install -y ffmpeg") or set FFMPEG_PATH';

/** Finds how this machine records video (see VideoRecorder). */
export async function findVideoRecorder(opts: FindVideoOptions = {}): Promise<VideoRecorder> {
  const env = opts.env ?? process.env;
  const platform = opts.platform ?? process.platform;
  if (opts.ffmpegPath !== undefined) {
    if (!executable(opts.ffmpegPath))
      return { kind: 'none', reason: `FFMPEG_PATH=${opts.ffmpegPath} is not an executable file` };
    const ok = await hasVp8(opts.ffmpegPath);
    return ok === true ? { kind: 'screencast', ffmpeg: opts.ffmpegPath } : { kind: 'none', reason: ok };
  }
  const own = playwrightFfmpegPaths(env, platform, opts.homedir ?? homedir()).find(executable);
  if (own) return { kind: 'playwright', ffmpeg: own };
  const system = onPath(env, platform);
  if (!system) return { kind: 'none', reason: `no ffmpeg found: ${HELP}` };
  const ok = await hasVp8(system);
  return ok === true ? { kind: 'screencast', ffmpeg: system } : { kind: 'none', reason: `${ok}: ${HELP}` };
}

/** Frames waiting for ffmpeg beyond this are dropped rather than held in memory. */
const MAX_PENDING_BYTES = 32 << 20;

export interface ScreencastRecording {
  /** Ends the recording and waits for ffmpeg to finish the file; resolves to why it failed, or undefined. */
  stop(): Promise<string | undefined>;
  /** Stops at once (the session was aborted): ffmpeg is killed. */
  kill(): void;
}

/** Even, so VP8's 4:2:0 frames fit. */
const even = (n: number) => Math.max(2, Math.floor(n / 2) * 2);

/**
 * Records `page` into `file` (VP8 WebM): its CDP screencast frames (JPEG, sent when the page paints) go to
 * ffmpeg as they come, timed by when ffmpeg reads them (a variable frame rate: a page that does not
 * change costs no frames), and the last one again at the end so the video lasts as long as the session.
 */
export async function startScreencast(
  page: Page,
  ffmpeg: string,
  file: string,
  size: { width: number; height: number },
): Promise<ScreencastRecording> {
  const w = even(size.width);
  const h = even(size.height);
  const args = [
    ...['-loglevel', 'error', '-use_wallclock_as_timestamps', '1'],
    ...['-f', 'image2pipe', '-c:v', 'mjpeg', '-i', 'pipe:0', '-fps_mode', 'passthrough'],
    ...['-an', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '1M'],
    ...['-qmin', '0', '-qmax', '50', '-crf', '8', '-pix_fmt', 'yuv420p'],
    ...['-vf', `scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:0:0:gray`],
    ...['-f', 'webm', '-y', file],
  ];
  const child = spawn(ffmpeg, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (err) => {
      stderr += err.message;
      resolve(-1);
    });
    child.on('close', (code) => resolve(code));
  });
  child.stdin?.on('error', () => {});

  let last: Buffer | undefined;
  let stopped = false;
  const write = (frame: Buffer) => {
    const stdin = child.stdin;
    if (!stdin || stdin.destroyed || stdin.writableLength > MAX_PENDING_BYTES) return;
    stdin.write(frame);
  };

  let cdp: CDPSession | undefined;
  try {
    cdp = await page.context().newCDPSession(page);
    const session = cdp;
    session.on('Page.screencastFrame', (f: { data: string; sessionId: number }) => {
      session.send('Page.screencastFrameAck', { sessionId: f.sessionId }).catch(() => {});
      if (stopped) return;
      last = Buffer.from(f.data, 'base64');
      write(last);
    });
    await session.send('Page.startScreencast', { format: 'jpeg', quality: 80, maxWidth: w, maxHeight: h });
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }

  return {
    async stop() {
      if (stopped) return 'stopped already';
      await cdp?.send('Page.stopScreencast').catch(() => {});
      stopped = true;
      await cdp?.detach().catch(() => {});
      if (!last) {
        child.kill('SIGKILL');
        await exited;
        return 'the page sent no frame';
      }
      write(last);
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code === 0 ? undefined : `ffmpeg exited ${code}: ${stderr.trim().slice(0, 300)}`;
    },
    kill() {
      stopped = true;
      void cdp?.detach().catch(() => {});
      child.kill('SIGKILL');
    },
  };
}
