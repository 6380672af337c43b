import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BrowserContext, BrowserContextOptions, Download, Page } from 'playwright-core';
import { DEFAULT_CAPTURE_OPTIONS, type ArtifactOptions, type CaptureMode } from '../core/types.js';
import {
  findVideoRecorder,
  startScreencast,
  type ScreencastRecording,
  type VideoRecorder,
} from '../browser/video.js';

/**
 * A session's HAR, video and downloads (artifacts.har, .video, .downloads): captured while it runs, kept
 * as `session.har`, `video.webm` and `download-<n>-<name>` when its mode says so (`on-failure`: only when
 * the session did not succeed), each file at most `maxBytes`. What could not be kept is a warning, never
 * a failure.
 */

export interface CaptureSettings {
  /** Largest HAR, video or download kept, per file (MAX_CAPTURE_BYTES). */
  maxBytes: number;
  /** Downloads kept per session (MAX_DOWNLOADS). */
  maxDownloads: number;
  /** How this machine records video (found once, then the same answer). */
  videoRecorder(): Promise<VideoRecorder>;
}

/** One search per process and FFMPEG_PATH. */
const recorders = new Map<string, Promise<VideoRecorder>>();
export function videoRecorderFor(ffmpegPath?: string): () => Promise<VideoRecorder> {
  return () => {
    const key = ffmpegPath ?? '';
    let found = recorders.get(key);
    if (!found) {
      found = findVideoRecorder({ ffmpegPath });
      recorders.set(key, found);
    }
    return found;
  };
}

export const DEFAULT_CAPTURE_SETTINGS: CaptureSettings = {
  maxBytes: 50 * 1024 * 1024,
  maxDownloads: 20,
  videoRecorder: videoRecorderFor(),
};

type Upload = (name: string, data: Buffer, contentType: string) => Promise<void>;

const DOWNLOAD_WAIT_MS = 10_000;
const DEFAULT_VIEWPORT = { width: 1280, height: 720 };

/** The viewport scaled down to fit 800x800, as Playwright sizes its videos. */
function videoSize(viewport: { width: number; height: number }): { width: number; height: number } {
  const scale = Math.min(1, 800 / Math.max(viewport.width, viewport.height));
  return { width: Math.round(viewport.width * scale), height: Math.round(viewport.height * scale) };
}

function kept(mode: CaptureMode, failed: boolean): boolean {
  return mode === 'on' || (mode === 'on-failure' && failed);
}

/** A download's suggested name as an artifact name's tail: letters, digits, `.`, `_`, `-`. */
export function downloadArtifactName(n: number, suggested: string): string {
  const safe = suggested
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._-]+/, '')
    .slice(-150);
  return `download-${n}-${safe || 'file'}`;
}

const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MiB`;

/** Counts what passes and stops the stream past `max` bytes. */
class Limit extends Transform {
  bytes = 0;
  constructor(private readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.max) done(new TooLarge());
    else done(null, chunk);
  }
}
class TooLarge extends Error {}

interface SavedDownload {
  name: string;
  file: string;
}

export class SessionCapture {
  readonly warnings: string[] = [];
  private readonly har: CaptureMode;
  private readonly video: CaptureMode;
  private readonly downloads: boolean;
  private page: Page | undefined;
  private screencast: ScreencastRecording | undefined;
  private screencastFile: string | undefined;
  private downloadCount = 0;
  private readonly saving: { name: string; done: Promise<SavedDownload | undefined> }[] = [];
  /** Past the wait for downloads: one still being saved is dropped, said once. */
  private downloadsSettled = false;
  private saved: SavedDownload[] = [];
  private detachDownloads = () => {};

  private constructor(
    options: ArtifactOptions,
    private readonly settings: CaptureSettings,
    private readonly dir: string,
    private readonly recorder: VideoRecorder | undefined,
    private readonly videoSize: { width: number; height: number },
  ) {
    this.har = options.har ?? DEFAULT_CAPTURE_OPTIONS.har;
    this.video = options.video ?? DEFAULT_CAPTURE_OPTIONS.video;
    this.downloads = options.downloads ?? DEFAULT_CAPTURE_OPTIONS.downloads;
  }

  /** The session's capture, or undefined when it asks for none. */
  static async prepare(
    options: ArtifactOptions,
    settings: CaptureSettings,
    viewport: { width: number; height: number } | undefined,
  ): Promise<SessionCapture | undefined> {
    const har = options.har ?? 'off';
    const video = options.video ?? 'off';
    if (har === 'off' && video === 'off' && options.downloads !== true) return undefined;
    const recorder = video === 'off' ? undefined : await settings.videoRecorder();
    const dir = await mkdtemp(join(tmpdir(), 'sfw-capture-'));
    const capture = new SessionCapture(
      options,
      settings,
      dir,
      recorder,
      videoSize(viewport ?? DEFAULT_VIEWPORT),
    );
    if (recorder?.kind === 'none') capture.warnings.push(`video needs ffmpeg: ${recorder.reason}`);
    return capture;
  }

  /** Options the context must be made with: a fresh context (HAR, Playwright's video), never a kept one. */
  contextOptions(): BrowserContextOptions | undefined {
    const out: BrowserContextOptions = {};
    if (this.har !== 'off') out.recordHar = { path: join(this.dir, 'session.har'), content: 'omit' };
    if (this.video !== 'off' && this.recorder?.kind === 'playwright')
      out.recordVideo = { dir: join(this.dir, 'video'), size: this.videoSize };
    return Object.keys(out).length > 0 ? out : undefined;
  }

  /** Whether the files are complete only once the context closed (HAR, Playwright's video). */
  get needsClose(): boolean {
    return this.contextOptions() !== undefined;
  }

  /** Starts what records on the page: downloads and the screencast video. */
  async attach(page: Page, context: BrowserContext): Promise<void> {
    this.page = page;
    if (this.downloads) {
      const onDownload = (d: Download) => {
        const name = downloadArtifactName(++this.downloadCount, d.suggestedFilename());
        this.saving.push({ name, done: this.saveDownload(d, this.downloadCount, name) });
      };
      const onPage = (p: Page) => p.on('download', onDownload);
      page.on('download', onDownload);
      context.on('page', onPage);
      this.detachDownloads = () => {
        for (const p of context.pages()) p.off('download', onDownload);
        context.off('page', onPage);
      };
    }
    if (this.video !== 'off' && this.recorder?.kind === 'screencast') {
      await mkdir(join(this.dir, 'video'), { recursive: true });
      this.screencastFile = join(this.dir, 'video', 'video.webm');
      try {
        this.screencast = await startScreencast(
          page,
          this.recorder.ffmpeg,
          this.screencastFile,
          this.videoSize,
        );
      } catch (err) {
        this.warnings.push(`video not recorded: ${(err as Error).message}`);
      }
    }
  }

  /** Ends what must end while the context is open: the screencast, and the downloads still being saved. */
  async beforeClose(): Promise<void> {
    this.detachDownloads();
    // Playwright removes a context's downloads when it closes.
    this.saved = await this.settleDownloads();
    if (this.screencast) {
      const problem = await this.screencast.stop();
      this.screencast = undefined;
      if (problem !== undefined) {
        this.warnings.push(`video not recorded: ${problem}`);
        this.screencastFile = undefined;
      }
    }
  }

  /**
   * Uploads what the session's modes keep (after the context closed when `needsClose`); answers the
   * warnings (also kept in `warnings`).
   */
  async upload(failed: boolean, upload: Upload): Promise<string[]> {
    if (kept(this.har, failed))
      await this.uploadFile('session.har', join(this.dir, 'session.har'), 'application/json', upload);
    if (kept(this.video, failed)) {
      const file = await this.videoFile();
      if (file) await this.uploadFile('video.webm', file, 'video/webm', upload);
    }
    for (const d of this.saved) await this.uploadFile(d.name, d.file, 'application/octet-stream', upload);
    return this.warnings;
  }

  /** Stops any recording and removes the capture's files. */
  async dispose(): Promise<void> {
    this.detachDownloads();
    this.screencast?.kill();
    this.screencast = undefined;
    await rm(this.dir, { recursive: true, force: true });
  }

  private async videoFile(): Promise<string | undefined> {
    if (this.recorder?.kind === 'screencast') return this.screencastFile;
    if (this.recorder?.kind !== 'playwright') return undefined;
    try {
      return await this.page?.video()?.path();
    } catch (err) {
      this.warnings.push(`video not recorded: ${(err as Error).message}`);
      return undefined;
    }
  }

  private async uploadFile(name: string, file: string, contentType: string, upload: Upload): Promise<void> {
    const st = await stat(file).catch(() => undefined);
    if (!st) {
      this.warnings.push(`${name} not kept: the browser wrote no file`);
      return;
    }
    if (st.size > this.settings.maxBytes) {
      this.warnings.push(
        `${name} dropped: ${mib(st.size)} is over the ${mib(this.settings.maxBytes)} limit (MAX_CAPTURE_BYTES)`,
      );
      return;
    }
    await upload(name, await readFile(file), contentType);
  }

  /** The downloads saved in time, in the order they started. */
  private async settleDownloads(): Promise<SavedDownload[]> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), DOWNLOAD_WAIT_MS);
    });
    const saved = await Promise.all(
      this.saving.map(async ({ name, done }) => {
        const r = await Promise.race([done, late]);
        if (r === 'late') {
          this.warnings.push(`${name} dropped: not finished ${DOWNLOAD_WAIT_MS / 1000} s after the session`);
          return undefined;
        }
        return r;
      }),
    );
    this.downloadsSettled = true;
    clearTimeout(timer);
    return saved.filter((d): d is SavedDownload => d !== undefined);
  }

  /** Streams one download to the capture's folder, within the size limit. */
  private async saveDownload(d: Download, n: number, name: string): Promise<SavedDownload | undefined> {
    if (n > this.settings.maxDownloads) {
      this.warnings.push(`${name} dropped: over ${this.settings.maxDownloads} downloads (MAX_DOWNLOADS)`);
      await d.cancel().catch(() => {});
      return undefined;
    }
    const file = join(this.dir, name);
    const limit = new Limit(this.settings.maxBytes);
    try {
      await pipeline(await d.createReadStream(), limit, createWriteStream(file));
      // Playwright's own copy goes now, not when the context closes (a kept context lives on).
      await d.delete().catch(() => {});
      return { name, file };
    } catch (err) {
      await rm(file, { force: true });
      const why =
        err instanceof TooLarge
          ? `${name} dropped: over the ${mib(this.settings.maxBytes)} limit (MAX_CAPTURE_BYTES)`
          : `${name} not kept: ${(await d.failure().catch(() => null)) ?? (err as Error).message}`;
      // One the wait gave up on was said to be dropped already.
      if (!this.downloadsSettled) this.warnings.push(why);
      await d.delete().catch(() => {});
      return undefined;
    }
  }
}
