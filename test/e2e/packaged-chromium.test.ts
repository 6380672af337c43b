import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readlinkSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SfwClient } from '@session-framework/sdk';
import { systemChromiumPaths } from '../../src/browser/chromium.js';
import { findPackagedBuild, packagedChromiumSupported } from '../../src/browser/packaged.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { waitFor } from '../helpers/wait.js';
import { freePort, killTagged, ROOT, taggedProcesses } from '../helpers/runner.js';

/**
 * The first hour on a machine without a browser: `sfw up` from this checkout, with the system's
 * Chromium hidden in a mount namespace (its launcher, its folder, and the NSS/NSPR/expat libraries it
 * pulled in), an empty Playwright cache and an empty user cache, finds the packaged build from npm,
 * unpacks it, says so, and runs a flow against a fixture page in it.
 */

// Libraries the packaged binary links against that a machine without a browser usually lacks.
const BROWSER_LIBS = [
  'libnss3.so',
  'libnssutil3.so',
  'libsmime3.so',
  'libnspr4.so',
  'libplc4.so',
  'libplds4.so',
  'libexpat.so.1',
];
const LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib'];

function namespacesUnavailable(): string | undefined {
  if (!packagedChromiumSupported())
    return `the packaged build is for Linux x64 (this is ${process.platform}-${process.arch})`;
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true'], { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    return `mount namespaces are unavailable here (unshare --mount: ${r.error?.message ?? r.stderr.trim()})`;
  return undefined;
}
const skipReason = namespacesUnavailable();
if (skipReason) console.warn(`packaged-chromium: skipped: ${skipReason}`);

/** The files and folders to hide, by their real paths (a bind mount over a symlink covers its target). */
function hiddenPaths(): { files: string[]; dirs: string[] } {
  const files = new Set<string>();
  const dirs = new Set<string>();
  for (const p of [
    ...systemChromiumPaths('linux'),
    ...LIB_DIRS.flatMap((d) => BROWSER_LIBS.map((l) => path.join(d, l))),
  ]) {
    if (existsSync(p)) files.add(realpathSync(p));
  }
  for (const d of ['/usr/lib/chromium', '/usr/lib/chromium-browser', '/opt/google/chrome'])
    if (existsSync(d)) dirs.add(realpathSync(d));
  return { files: [...files], dirs: [...dirs] };
}

let tmp: string;
let site: FixtureServer;
const tag = randomUUID();

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'sfw-packaged-'));
  site = await startFixtureServer();
});
afterAll(async () => {
  await killTagged(tag);
  await site?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe.skipIf(skipReason !== undefined)('the packaged Chromium from npm', () => {
  it('is installed by npm install on Linux x64 (an optional dependency)', () => {
    expect(findPackagedBuild(), 'npm ci installs @sparticuz/chromium on Linux x64').toBeDefined();
  });

  it(
    'runs a flow under `sfw up` with no system Chromium and no Playwright cache',
    { timeout: 60_000 },
    async () => {
      const empty = { file: path.join(tmp, 'empty-file'), dir: path.join(tmp, 'empty-dir') };
      await writeFile(empty.file, '');
      await mkdir(empty.dir);
      const cache = path.join(tmp, 'cache');
      const browsers = path.join(tmp, 'playwright-browsers');
      const data = path.join(tmp, 'data');
      await Promise.all([mkdir(cache), mkdir(browsers), mkdir(data)]);
      const hidden = hiddenPaths();
      expect(hidden.files.length, 'this machine has a system Chromium to hide').toBeGreaterThan(0);

      const mounts = [
        ...hidden.files.map((f) => `mount --bind ${JSON.stringify(empty.file)} ${JSON.stringify(f)}`),
        ...hidden.dirs.map((d) => `mount --bind ${JSON.stringify(empty.dir)} ${JSON.stringify(d)}`),
      ];
      const port = await freePort();
      const apiUrl = `http://127.0.0.1:${port}`;
      const child = spawn(
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          '--',
          'sh',
          '-c',
          `set -e; ${mounts.join('; ')}; exec "$@"`,
          'sh',
          process.execPath,
          '--import',
          'tsx',
          path.join(ROOT, 'test/helpers/runner-cli.ts'),
          'up',
          '--port',
          String(port),
          '--max-concurrency',
          '1',
        ],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            CHROMIUM_PATH: undefined,
            PLAYWRIGHT_BROWSERS_PATH: browsers,
            XDG_CACHE_HOME: cache,
            DATA_DIR: data,
            LOG_LEVEL: 'warn',
            SFW_PROCESS_TAG: tag,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
          detached: true,
        },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));

      await waitFor(() => /Session Framework is up/.test(out) || child.exitCode !== null, {
        timeoutMs: 45_000,
        what: 'sfw up to start',
      }).catch((err: Error) => {
        throw new Error(`${err.message}; its output:\n${out.slice(-3000)}`);
      });
      expect(out, out).toMatch(/Session Framework is up: .*runner \S+ serving .*flow/);
      expect(out).toContain('sfw up: unpacking the packaged Chromium (first use of this version)');
      expect(out).toMatch(
        /sfw up: browser: Chromium \d+\.\d+\.\d+\.\d+ at \S+\/session-framework\/chromium-[\d.]+-linux-x64\/chromium \(the packaged build/,
      );
      expect(out).not.toMatch(/browser: .*(installed on this machine|Playwright's browser cache)/);

      const client = new SfwClient({ baseUrl: apiUrl, retries: 0 });
      try {
        const created = await client.createSession({
          type: 'flow',
          input: {
            steps: [
              { action: 'goto', url: `${site.url}/pages/list.html` },
              { action: 'extract', selector: 'title', as: 'title' },
              { action: 'extract', selector: '.item', as: 'items', all: true },
            ],
          },
        });
        const done = await client.waitUntilDone(created.id, { timeoutMs: 30_000 });
        expect(done.status, done.errorMessage ?? '').toBe('succeeded');
        const extracted = (done.result as { extracted: { title: string; items: string[] } }).extracted;
        expect(extracted.title).toBe('List fixture');
        expect(extracted.items[0]).toBe('Item 1');

        // The browser that ran it is the unpacked one: its processes' executable lies in the user cache.
        const exes = (await taggedProcesses(tag)).flatMap((p) => {
          try {
            return [readlinkSync(`/proc/${p.pid}/exe`)];
          } catch {
            return [];
          }
        });
        expect(
          exes.filter((e) => e.startsWith(realpathSync(cache)) && e.endsWith('/browser/chromium')).length,
        ).toBeGreaterThan(0);
        expect(exes.filter((e) => e.startsWith('/usr/lib/chromium'))).toEqual([]);
      } finally {
        await client.close();
      }

      process.kill(-child.pid!, 'SIGINT');
      expect(await exited).toBe(0);
      await waitFor(async () => (await taggedProcesses(tag)).length === 0, {
        timeoutMs: 15_000,
        what: 'no process of sfw up left',
      });
      // One unpacked folder, no half-filled temporary one left beside it.
      expect(await readdir(path.join(cache, 'session-framework'))).toEqual([
        expect.stringMatching(/^chromium-[\d.]+-linux-x64$/),
      ]);
    },
  );
});
