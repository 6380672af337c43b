import { accessSync, constants, openSync, readSync, closeSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** What to tell a user who has no Chromium. */
export const CHROMIUM_HELP = [
  'No Chromium found. Install one and run again:',
  '  Debian/Ubuntu:  apt-get install -y chromium',
  '  or set CHROMIUM_PATH (--chromium-path) to a Chromium or Chrome executable',
  '  (Playwright-downloaded browsers under ~/.cache/ms-playwright or PLAYWRIGHT_BROWSERS_PATH are found too).',
].join('\n');

function isExecutable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Chromium builds in a Playwright browser cache, newest revision first. */
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
    .flatMap((name) => [
      join(root, name, 'chrome-linux', 'chrome'),
      join(root, name, 'chrome-linux64', 'chrome'),
      join(root, name, 'chrome-linux', 'headless_shell'),
      join(root, name, 'chrome-headless-shell-linux64', 'chrome-headless-shell'),
    ]);
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

/**
 * Finds a Chromium to drive: the explicit path (CHROMIUM_PATH) first, then Playwright's browser cache,
 * then the usual system locations. Returns undefined when there is none (show CHROMIUM_HELP).
 */
export function findChromium(explicit?: string): string | undefined {
  if (explicit) return isExecutable(explicit) ? explicit : undefined;
  const caches = [process.env.PLAYWRIGHT_BROWSERS_PATH, join(homedir(), '.cache', 'ms-playwright')].filter(
    (p): p is string => !!p && p !== '0',
  );
  const candidates = [
    ...caches.flatMap(fromPlaywrightCache),
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
    '/usr/bin/google-chrome',
    '/usr/bin/google-chrome-stable',
    '/snap/bin/chromium',
  ];
  const found = candidates.find(isExecutable);
  return found === undefined ? undefined : unwrapLauncherScript(found);
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
