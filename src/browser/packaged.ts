import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { brotliDecompress, createBrotliDecompress } from 'node:zlib';
import { ConfigError } from '../core/errors.js';
import { extractTar } from './untar.js';

/**
 * The packaged build: the Chromium (headless shell) that the optional npm dependency
 * `@sparticuz/chromium` carries, brotli-compressed, for Linux x64 only. It is unpacked once per package
 * version into a cache folder and run through a small launcher that puts the libraries and fonts that
 * came with it in front (libnss3 and friends, which a machine without a browser usually lacks).
 */

export const PACKAGED_CHROMIUM_PACKAGE = '@sparticuz/chromium';

/** The platforms the npm package has binaries for. */
export function packagedChromiumSupported(
  platform: NodeJS.Platform = process.platform,
  arch: string = process.arch,
): boolean {
  return platform === 'linux' && arch === 'x64';
}

export interface PackagedBuild {
  /** The package's version (153.0.0): it names the unpacked folder. */
  version: string;
  /** The folder with chromium.br, swiftshader.tar.br, al2023.tar.br and fonts.tar.br. */
  binDir: string;
}

/** The installed package, or undefined (not installed, e.g. `npm ci --omit=optional`, or another platform). */
export function findPackagedBuild(): PackagedBuild | undefined {
  if (!packagedChromiumSupported()) return undefined;
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(PACKAGED_CHROMIUM_PACKAGE);
  } catch {
    return undefined;
  }
  // The package exports only its entry (build/index.js): its root is one folder above.
  const root = path.resolve(path.dirname(entry), '..');
  try {
    const { version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      version?: string;
    };
    const binDir = path.join(root, 'bin');
    if (!version || !existsSync(path.join(binDir, 'chromium.br'))) return undefined;
    return { version, binDir };
  } catch {
    return undefined;
  }
}

/** Where unpacked builds live: $XDG_CACHE_HOME/session-framework, else ~/.cache/session-framework. */
export function packagedCacheRoot(env: Record<string, string | undefined> = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'session-framework');
}

export interface UnpackProgress {
  /** Compressed bytes read so far, of `totalBytes`. */
  doneBytes: number;
  totalBytes: number;
  /** The folder being filled. */
  dir: string;
}

export interface UnpackedChromium {
  /** The launcher to give Playwright as its executable. */
  path: string;
  /** What the browser says of itself (`Chromium 153.0.8010.0`). */
  version: string;
  dir: string;
  /** This call unpacked it (the first use); false when it was already there. */
  unpacked: boolean;
}

interface Manifest {
  package: string;
  packageVersion: string;
  chromium: string;
}

const MANIFEST = 'sfw-build.json';
const FOLDER_TODO = 'Free space there or set XDG_CACHE_HOME to a writable folder';
const RUN_TODO =
  'Install a browser instead (apt-get install -y chromium, or npx playwright-core install chromium)';
const ARCHIVES = ['chromium.br', 'swiftshader.tar.br', 'al2023.tar.br', 'fonts.tar.br'] as const;
const LAUNCHER = 'chromium';

// Relative paths from the launcher's own location, so the folder can be renamed into place after it
// was filled and checked.
const LAUNCHER_SCRIPT = `#!/bin/sh
# The packaged Chromium with the libraries and fonts it came with (see sfw-build.json).
dir=\${0%/*}
LD_LIBRARY_PATH="$dir/lib\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" FONTCONFIG_FILE="$dir/fonts.conf" exec "$dir/browser/chromium" "$@"
`;
// The machine's fonts, plus the one family the package carries for machines with none.
const FONTS_CONF = `<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir prefix="relative">fonts</dir>
</fontconfig>
`;

function readManifest(dir: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Half-filled folders of processes that died while unpacking. */
async function removeAbandoned(root: string): Promise<void> {
  const names = await readdir(root).catch(() => [] as string[]);
  for (const name of names) {
    const pid = /^\.unpack-(\d+)-/.exec(name)?.[1];
    if (pid !== undefined && Number(pid) !== process.pid && !alive(Number(pid)))
      await rm(path.join(root, name), { recursive: true, force: true });
  }
}

/** Runs the browser once (`--version`): it proves the binary and its libraries load on this machine. */
function probe(launcher: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(launcher, ['--version'], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${stderr.trim().split('\n')[0] || err.message}`));
      else resolve(stdout.trim());
    });
  });
}

/**
 * The unpacked build, unpacking it first when this package version has not been unpacked yet. The
 * folder is filled under a temporary name beside its final one and renamed once the browser ran, so a
 * concurrent start never sees half a browser; when two unpack at once, the first rename wins and the
 * other uses that folder.
 */
export async function unpackPackagedChromium(
  build: PackagedBuild,
  opts: { cacheRoot?: string; onProgress?: (p: UnpackProgress) => void } = {},
): Promise<UnpackedChromium> {
  const root = opts.cacheRoot ?? packagedCacheRoot();
  const dir = path.join(root, `chromium-${build.version}-${process.platform}-${process.arch}`);
  const done = (unpacked: boolean): UnpackedChromium | undefined => {
    const manifest = readManifest(dir);
    return manifest && { path: path.join(dir, LAUNCHER), version: manifest.chromium, dir, unpacked };
  };
  const ready = done(false);
  if (ready) return ready;

  const failed = (what: string, err: unknown, todo = FOLDER_TODO) =>
    new ConfigError(
      `the packaged Chromium (${PACKAGED_CHROMIUM_PACKAGE} ${build.version}) ${what} ${dir}: ` +
        `${(err as Error).message}. ${todo}, or set CHROMIUM_PATH (--chromium-path) to another Chromium`,
    );
  const temp = path.join(root, `.unpack-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  try {
    await mkdir(root, { recursive: true });
    await removeAbandoned(root);
    await mkdir(path.join(temp, 'browser'), { recursive: true });
    await fill(build, temp, (doneBytes, totalBytes) => opts.onProgress?.({ doneBytes, totalBytes, dir }));
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    throw failed('could not be unpacked to', err);
  }
  let chromium: string;
  try {
    chromium = await probe(path.join(temp, LAUNCHER));
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    throw failed('does not run on this machine, unpacked to', err, RUN_TODO);
  }
  const manifest: Manifest = {
    package: PACKAGED_CHROMIUM_PACKAGE,
    packageVersion: build.version,
    chromium,
  };
  try {
    await writeFile(path.join(temp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    // A folder without a manifest never came from a rename here: it is not a browser, clear it.
    if (existsSync(dir) && !readManifest(dir)) await rm(dir, { recursive: true, force: true });
    await rename(temp, dir);
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    // Another process's folder landed first: use that one.
    const theirs = done(false);
    if (theirs) return theirs;
    throw failed('could not be moved into place at', err);
  }
  return done(true)!;
}

async function fill(
  build: PackagedBuild,
  temp: string,
  progress: (doneBytes: number, totalBytes: number) => void,
): Promise<void> {
  const sizes = ARCHIVES.map((a) => statSync(path.join(build.binDir, a)).size);
  const totalBytes = sizes.reduce((a, b) => a + b, 0);
  let doneBytes = 0;
  progress(0, totalBytes);
  const count = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      doneBytes += chunk.length;
      progress(doneBytes, totalBytes);
      cb(null, chunk);
    },
  });
  const binary = path.join(temp, 'browser', 'chromium');
  await pipeline(
    createReadStream(path.join(build.binDir, 'chromium.br'), { highWaterMark: 1 << 20 }),
    count,
    createBrotliDecompress(),
    createWriteStream(binary, { mode: 0o755 }),
  );
  await chmod(binary, 0o755);
  const inflate = promisify(brotliDecompress);
  const tars: [archive: string, dest: string, skip?: (name: string) => boolean][] = [
    // SwiftShader's GL libraries are looked up beside the binary.
    ['swiftshader.tar.br', path.join(temp, 'browser')],
    // lib/: NSS, NSPR and expat built for the binary.
    ['al2023.tar.br', temp],
    // fonts/; its fonts.conf is for AWS Lambda's folders, ours is written below.
    ['fonts.tar.br', temp, (name) => name === 'fonts.conf'],
  ];
  for (const [i, [archive, dest, skip]] of tars.entries()) {
    await extractTar(await inflate(await readFile(path.join(build.binDir, archive))), dest, skip);
    doneBytes += sizes[i + 1]!;
    progress(doneBytes, totalBytes);
  }
  await writeFile(path.join(temp, 'fonts.conf'), FONTS_CONF);
  await writeFile(path.join(temp, LAUNCHER), LAUNCHER_SCRIPT, { mode: 0o755 });
  await chmod(path.join(temp, LAUNCHER), 0o755);
}
