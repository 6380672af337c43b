import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findVideoRecorder, playwrightFfmpegPaths } from '../../src/browser/video.js';
import { downloadArtifactName } from '../../src/sessions/capture.js';

/** Which way a runner records video, from what the machine has (fake executables in a temp folder). */

const root = mkdtempSync(join(tmpdir(), 'sfw-video-find-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const revision = (
  JSON.parse(
    readFileSync(
      join(dirname(createRequire(import.meta.url).resolve('playwright-core/package.json')), 'browsers.json'),
      'utf8',
    ),
  ) as { browsers: { name: string; revision: string }[] }
).browsers.find((b) => b.name === 'ffmpeg')?.revision;

/** An executable shell script at `path` that prints `encoders` for -encoders. */
function fakeFfmpeg(path: string, encoders: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `#!/bin/sh\necho '${encoders}'\n`);
  chmodSync(path, 0o755);
  return path;
}

describe('findVideoRecorder', () => {
  it("uses Playwright's own ffmpeg where playwright-core looks for it", async () => {
    const cache = join(root, 'pw-cache');
    const own = fakeFfmpeg(join(cache, `ffmpeg-${revision}`, 'ffmpeg-linux'), '');
    expect(playwrightFfmpegPaths({ PLAYWRIGHT_BROWSERS_PATH: cache }, 'linux', '/home/x')).toEqual([own]);
    expect(playwrightFfmpegPaths({}, 'linux', '/home/x')).toEqual([
      join('/home/x', '.cache', 'ms-playwright', `ffmpeg-${revision}`, 'ffmpeg-linux'),
    ]);
    const found = await findVideoRecorder({
      env: { PLAYWRIGHT_BROWSERS_PATH: cache, PATH: '' },
      platform: 'linux',
    });
    expect(found).toEqual({ kind: 'playwright', ffmpeg: own });
  });

  it('else an ffmpeg with libvpx on PATH, recording the screencast', async () => {
    const bin = join(root, 'bin-vpx');
    const ffmpeg = fakeFfmpeg(join(bin, 'ffmpeg'), ' V....D libvpx               libvpx VP8 (codec vp8)');
    const env = { PLAYWRIGHT_BROWSERS_PATH: join(root, 'empty'), PATH: bin };
    expect(await findVideoRecorder({ env, platform: 'linux' })).toEqual({ kind: 'screencast', ffmpeg });
  });

  it('says why there is none: no ffmpeg, one without VP8, a bad FFMPEG_PATH', async () => {
    const empty = { PLAYWRIGHT_BROWSERS_PATH: join(root, 'empty'), PATH: join(root, 'nothing') };
    const none = await findVideoRecorder({ env: empty, platform: 'linux' });
    expect(none.kind).toBe('none');
    expect(none.kind === 'none' && none.reason).toMatch(
      /^no ffmpeg found: .*apt-get install -y ffmpeg.*FFMPEG_PATH/,
    );

    const bin = join(root, 'bin-novpx');
    fakeFfmpeg(join(bin, 'ffmpeg'), ' V..... libx264 H.264');
    const noVp8 = await findVideoRecorder({ env: { ...empty, PATH: bin }, platform: 'linux' });
    expect(noVp8.kind === 'none' && noVp8.reason).toContain('has no VP8 encoder (libvpx)');

    const bad = await findVideoRecorder({ ffmpegPath: join(root, 'missing'), env: empty, platform: 'linux' });
    expect(bad).toEqual({
      kind: 'none',
      reason: `FFMPEG_PATH=${join(root, 'missing')} is not an executable file`,
    });
  });
});

describe('downloadArtifactName', () => {
  it('keeps letters, digits, . _ - of the suggested name, numbered', () => {
    expect(downloadArtifactName(1, 'monthly report (May).csv')).toBe('download-1-monthly_report_May_.csv');
    expect(downloadArtifactName(2, '../../etc/passwd')).toBe('download-2-etc_passwd');
    expect(downloadArtifactName(3, 'résumé.pdf')).toBe('download-3-r_sum_.pdf');
    expect(downloadArtifactName(4, '')).toBe('download-4-file');
    expect(downloadArtifactName(5, `${'a'.repeat(300)}.zip`)).toMatch(/^download-5-a{146}\.zip$/);
  });
});
