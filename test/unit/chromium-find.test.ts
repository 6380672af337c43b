import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { brotliCompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { findChromium, type FoundChromium } from '../../src/browser/chromium.js';
import {
  unpackPackagedChromium,
  type PackagedBuild,
  type UnpackProgress,
} from '../../src/browser/packaged.js';
import { extractTar } from '../../src/browser/untar.js';
import { ConfigError } from '../../src/core/errors.js';

/**
 * Where the browser comes from (CHROMIUM_PATH → Playwright's cache → the system → the packaged build),
 * and the packaged build's unpack: once, atomically under concurrent starts, checked before it is used.
 */

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'sfw-chromium-find-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function executable(file: string, body = '#!/bin/sh\nexit 0\n'): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, body);
  await chmod(file, 0o755);
  return file;
}

describe('findChromium: the detection order', () => {
  const PACKAGED: FoundChromium = { path: '/cache/chromium', source: 'packaged', version: 'Chromium 1.2.3' };
  let root: string;
  let pwCache: string;
  let home: string;
  let system: string;
  const packaged = vi.fn(() => Promise.resolve<FoundChromium | undefined>(PACKAGED));

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmp, 'order-'));
    pwCache = path.join(root, 'playwright');
    home = path.join(root, 'home');
    await executable(path.join(pwCache, 'chromium-1200', 'chrome-linux64', 'chrome'));
    await executable(path.join(pwCache, 'chromium-1255', 'chrome-linux64', 'chrome'));
    await executable(
      path.join(
        pwCache,
        'chromium_headless_shell-1255',
        'chrome-headless-shell-linux64',
        'chrome-headless-shell',
      ),
    );
    await executable(path.join(home, '.cache', 'ms-playwright', 'chromium-1300', 'chrome-linux64', 'chrome'));
    system = await executable(path.join(root, 'usr', 'bin', 'chromium'));
  });

  const find = (
    explicit: string | undefined,
    o: { env?: Record<string, string>; systemPaths?: string[] } = {},
  ) =>
    findChromium(explicit, {
      env: o.env ?? { PLAYWRIGHT_BROWSERS_PATH: pwCache },
      platform: 'linux',
      homedir: home,
      systemPaths: o.systemPaths ?? [system],
      packaged,
    });

  it('takes the explicit path and nothing else', async () => {
    const explicit = await executable(path.join(root, 'explicit', 'chrome'));
    expect(await find(explicit)).toEqual({ path: explicit, source: 'explicit' });
    // Not executable: no fallback to the other places (the runner names CHROMIUM_PATH).
    expect(await find(path.join(root, 'explicit', 'missing'))).toBeUndefined();
    expect(packaged).not.toHaveBeenCalled();
  });

  it("prefers Playwright's cache: the newest revision, the full browser before the headless shell", async () => {
    expect(await find(undefined)).toEqual({
      path: path.join(pwCache, 'chromium-1255', 'chrome-linux64', 'chrome'),
      source: 'playwright',
    });
  });

  it("reads only PLAYWRIGHT_BROWSERS_PATH when set, else the platform's cache (XDG_CACHE_HOME on Linux)", async () => {
    const empty = path.join(root, 'empty');
    await mkdir(empty, { recursive: true });
    expect(await find(undefined, { env: { PLAYWRIGHT_BROWSERS_PATH: empty } })).toEqual({
      path: system,
      source: 'system',
    });
    expect(await find(undefined, { env: {} })).toEqual({
      path: path.join(home, '.cache', 'ms-playwright', 'chromium-1300', 'chrome-linux64', 'chrome'),
      source: 'playwright',
    });
    expect(await find(undefined, { env: { XDG_CACHE_HOME: path.join(root, 'nowhere') } })).toMatchObject({
      source: 'system',
    });
  });

  it('then the system, skipping what is not executable, through a distribution launcher to its binary', async () => {
    const env = { PLAYWRIGHT_BROWSERS_PATH: path.join(root, 'none') };
    const notExecutable = path.join(root, 'usr', 'bin', 'plain-file');
    await writeFile(notExecutable, '');
    expect(await find(undefined, { env, systemPaths: [notExecutable, system] })).toEqual({
      path: system,
      source: 'system',
    });
    // Debian's /usr/bin/chromium is a script that execs $LIBDIR/$APPNAME.
    const binary = await executable(path.join(root, 'usr', 'lib', 'chromium', 'chromium'), '\x7fELF');
    const launcher = await executable(
      path.join(root, 'usr', 'bin', 'chromium-launcher'),
      `#!/bin/sh\nAPPNAME=chromium\nLIBDIR=${path.join(root, 'usr', 'lib')}/$APPNAME\nexec "$LIBDIR/$APPNAME" "$@"\n`,
    );
    expect(await find(undefined, { env, systemPaths: [launcher] })).toEqual({
      path: binary,
      source: 'system',
    });
    expect(packaged).not.toHaveBeenCalled();
  });

  it('then the packaged build, unpacked only when nothing else was found', async () => {
    const env = { PLAYWRIGHT_BROWSERS_PATH: path.join(root, 'none') };
    expect(await find(undefined, { env, systemPaths: [] })).toEqual(PACKAGED);
    expect(packaged).toHaveBeenCalledTimes(1);
    packaged.mockResolvedValueOnce(undefined);
    expect(await find(undefined, { env, systemPaths: [] })).toBeUndefined();
  });
});

/** A package shaped like @sparticuz/chromium whose "browser" is a script. */
async function fakePackage(name: string, browser: string): Promise<PackagedBuild> {
  const dir = path.join(tmp, name);
  const bin = path.join(dir, 'bin');
  const src = path.join(dir, 'src');
  await mkdir(bin, { recursive: true });
  await writeFile(path.join(bin, 'chromium.br'), brotliCompressSync(Buffer.from(browser)));
  const tarBr = async (archive: string, files: Record<string, string>) => {
    const from = path.join(src, archive);
    for (const [f, body] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(from, f)), { recursive: true });
      await writeFile(path.join(from, f), body);
    }
    const tar = execFileSync('tar', ['-C', from, '-cf', '-', ...Object.keys(files)]);
    await writeFile(path.join(bin, archive), brotliCompressSync(tar));
  };
  await tarBr('swiftshader.tar.br', { 'libEGL.so': 'egl', 'libGLESv2.so': 'gles' });
  await tarBr('al2023.tar.br', { 'lib/libnss3.so': 'nss' });
  await tarBr('fonts.tar.br', { 'fonts.conf': '<lambda/>', 'fonts/Open_Sans/OpenSans-Regular.ttf': 'ttf' });
  return { version: '1.2.3', binDir: bin };
}

const BROWSER = `#!/bin/sh
case "$1" in
  --version) echo "Chromium 1.2.3.4" ;;
  --env) echo "$LD_LIBRARY_PATH|$FONTCONFIG_FILE" ;;
esac
`;

describe('the packaged build: unpacking', () => {
  it('unpacks once, with progress, into a folder whose launcher runs the binary with its libraries and fonts', async () => {
    const build = await fakePackage('pkg-once', BROWSER);
    const cacheRoot = path.join(tmp, 'cache-once');
    const progress: UnpackProgress[] = [];
    const first = await unpackPackagedChromium(build, { cacheRoot, onProgress: (p) => progress.push(p) });
    const dir = path.join(cacheRoot, `chromium-1.2.3-${process.platform}-${process.arch}`);
    expect(first).toEqual({
      path: path.join(dir, 'chromium'),
      version: 'Chromium 1.2.3.4',
      dir,
      unpacked: true,
    });
    expect(progress[0]).toMatchObject({ doneBytes: 0, dir });
    expect(progress.at(-1)!.doneBytes).toBe(progress.at(-1)!.totalBytes);
    expect(progress.map((p) => p.doneBytes)).toEqual(
      [...progress.map((p) => p.doneBytes)].sort((a, b) => a - b),
    );
    for (const f of [
      'browser/chromium',
      'browser/libEGL.so',
      'browser/libGLESv2.so',
      'lib/libnss3.so',
      'fonts/Open_Sans/OpenSans-Regular.ttf',
    ])
      expect(existsSync(path.join(dir, f)), f).toBe(true);
    expect(
      execFileSync(first.path, ['--env'], { env: { PATH: '/usr/bin:/bin' } })
        .toString()
        .trim(),
    ).toBe(`${dir}/lib|${dir}/fonts.conf`);

    const again = await unpackPackagedChromium(build, { cacheRoot, onProgress: (p) => progress.push(p) });
    expect(again).toEqual({ ...first, unpacked: false });
    expect(progress.filter((p) => p.doneBytes === 0)).toHaveLength(1);
  });

  it('concurrent first uses end with one complete folder, none half-filled, and one of them unpacking it', async () => {
    const build = await fakePackage('pkg-race', BROWSER);
    const cacheRoot = path.join(tmp, 'cache-race');
    const results = await Promise.all(
      Array.from({ length: 4 }, () => unpackPackagedChromium(build, { cacheRoot })),
    );
    expect(new Set(results.map((r) => r.path)).size).toBe(1);
    expect(results.filter((r) => r.unpacked)).toHaveLength(1);
    expect(await readdir(cacheRoot)).toEqual([`chromium-1.2.3-${process.platform}-${process.arch}`]);
    expect(execFileSync(results[0]!.path, ['--version']).toString().trim()).toBe('Chromium 1.2.3.4');
  });

  it('clears the half-filled folders of unpacks that died', async () => {
    const build = await fakePackage('pkg-stale', BROWSER);
    const cacheRoot = path.join(tmp, 'cache-stale');
    // Beyond Linux's largest pid: no such process.
    const stale = path.join(cacheRoot, '.unpack-4194305-abcdef');
    await mkdir(path.join(stale, 'browser'), { recursive: true });
    await unpackPackagedChromium(build, { cacheRoot });
    expect(existsSync(stale)).toBe(false);
  });

  it('refuses a binary that does not run here, saying what to do, and leaves nothing behind', async () => {
    const build = await fakePackage(
      'pkg-broken',
      '#!/bin/sh\necho "chromium: error while loading shared libraries: libfoo.so.1" >&2\nexit 127\n',
    );
    const cacheRoot = path.join(tmp, 'cache-broken');
    const err = await unpackPackagedChromium(build, { cacheRoot }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/does not run on this machine.*libfoo\.so\.1.*CHROMIUM_PATH/);
    expect(await readdir(cacheRoot)).toEqual([]);
  });
});

describe('extractTar', () => {
  const long = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(60)}.txt`;

  for (const format of ['gnu', 'ustar', 'posix'])
    it(`unpacks files and folders of a ${format} archive, long names included`, async () => {
      const src = await mkdtemp(path.join(tmp, `tar-src-${format}-`));
      await mkdir(path.join(src, path.dirname(long)), { recursive: true });
      await writeFile(path.join(src, long), 'long');
      await writeFile(path.join(src, 'run.sh'), '#!/bin/sh\n');
      await chmod(path.join(src, 'run.sh'), 0o755);
      const archive = execFileSync('tar', [
        '-C',
        src,
        `--format=${format}`,
        '-cf',
        '-',
        'run.sh',
        'd'.repeat(60),
      ]);
      const dest = await mkdtemp(path.join(tmp, `tar-dest-${format}-`));
      const names = await extractTar(archive, dest, (n) => n.endsWith('skipped'));
      expect(names).toEqual(expect.arrayContaining(['run.sh', long]));
      expect(execFileSync('cat', [path.join(dest, long)]).toString()).toBe('long');
      expect(
        execFileSync('stat', ['-c', '%a', path.join(dest, 'run.sh')])
          .toString()
          .trim(),
      ).toBe('755');
    });

  it('refuses entries that point outside the folder', async () => {
    const src = await mkdtemp(path.join(tmp, 'tar-abs-'));
    await writeFile(path.join(src, 'x'), 'x');
    const absolute = execFileSync('tar', ['-P', '-cf', '-', path.join(src, 'x')]);
    const climbing = execFileSync('tar', ['-C', src, '-P', '--transform', 's,^,../,', '-cf', '-', 'x']);
    const dest = await mkdtemp(path.join(tmp, 'tar-abs-dest-'));
    await expect(extractTar(absolute, dest)).rejects.toThrow(/points outside/);
    await expect(extractTar(climbing, dest)).rejects.toThrow(/points outside/);
  });
});
