import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chromiumArgs, chromiumHelp, findChromium } from '../../src/browser/chromium.js';
import { BrowserPool } from '../../src/browser/pool.js';
import { EXTRA_DISABLED_FEATURES } from '../../src/browser/features.js';
import { isAlive, procCmdline, processTree } from '../../src/browser/procfs.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';
import { waitFor } from '../helpers/wait.js';
import { requireChromium } from '../helpers/chromium.js';

let site: FixtureServer;
let executablePath: string;
let tempDir: string;
const pools: BrowserPool[] = [];

beforeAll(async () => {
  executablePath = await requireChromium();
  site = await startFixtureServer();
  // Each file gets its own temp root, so sweeping and process checks see only this file's browsers.
  tempDir = await mkdtemp(join(tmpdir(), 'sfw-pool-test-'));
});
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});
afterAll(async () => {
  await site?.close();
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
});

async function newPool(
  opts: Partial<ConstructorParameters<typeof BrowserPool>[0]> = {},
): Promise<BrowserPool> {
  const pool = new BrowserPool({ executablePath, tempDir, ...opts });
  pools.push(pool);
  await pool.start();
  return pool;
}

/** Processes whose command line mentions `marker`, as `pgrep -f` sees them. */
function pgrep(marker: string): number[] {
  const out = spawnSync('pgrep', ['-f', marker], { encoding: 'utf8' });
  return out.stdout
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => pid !== out.pid);
}

const page = (path: string) => `${site.url}/pages/${path}`;

describe('finding Chromium', () => {
  it('finds an executable (the real binary behind a launcher script), honours an explicit path', async () => {
    const found = await findChromium();
    expect(found).toBeDefined();
    // A system Chromium is the binary behind the distribution's launcher script; the packaged build
    // runs through its own launcher, which sets its libraries.
    if (found!.source === 'system')
      expect(readFileSync(found!.path).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(await findChromium(found!.path)).toEqual({ path: found!.path, source: 'explicit' });
    expect(await findChromium('/nonexistent/chrome')).toBeUndefined();
    expect(chromiumHelp()).toContain('CHROMIUM_PATH');
    expect(chromiumArgs()).toEqual(
      expect.arrayContaining(['--disable-dev-shm-usage', '--no-first-run', '--disable-gpu']),
    );
  });
});

describe('browser pool', () => {
  it('gives each session a fresh context: cookies and storage of one are not seen by the next', async () => {
    const pool = await newPool();
    const a = await pool.acquire();
    await a.page.goto(page('simple.html'));
    await a.page.evaluate(() => {
      document.cookie = 'who=first; path=/';
      localStorage.setItem('k', 'v');
    });
    expect(await a.context.cookies()).toHaveLength(1);
    await a.release();

    const b = await pool.acquire();
    expect(b.context).not.toBe(a.context);
    await b.page.goto(page('simple.html'));
    expect(await b.context.cookies()).toEqual([]);
    expect(await b.page.evaluate(() => [document.cookie, localStorage.getItem('k')])).toEqual(['', null]);
    await b.release();
    expect(pool.generation).toBe(1);
  });

  it('launches Chromium with one --disable-features: Playwright’s list plus the per-context WebUI popups', async () => {
    const pool = await newPool({ prewarm: false });
    const switches = procCmdline(pool.browserPid!).filter((a) => a.startsWith('--disable-features='));
    expect(switches).toHaveLength(1);
    const features = switches[0]!.split('=')[1]!.split(',');
    expect(features).toEqual(
      expect.arrayContaining(['PaintHolding', 'HttpsUpgrades', ...EXTRA_DISABLED_FEATURES]),
    );
    expect(procCmdline(pool.browserPid!)).toEqual(expect.arrayContaining(['--disable-dev-shm-usage']));
  });

  it('reuseContext keeps one context and page per type and clears cookies, storage and permissions', async () => {
    const pool = await newPool();
    const a = await pool.acquire({ reuseContext: 'checkout' });
    await a.page.goto(page('simple.html'));
    await a.context.grantPermissions(['geolocation'], { origin: site.url });
    await a.page.evaluate(() => {
      document.cookie = 'who=first; path=/';
      localStorage.setItem('k', 'v');
      sessionStorage.setItem('s', 'v');
    });
    const permission = () =>
      a.page.evaluate(async () => (await navigator.permissions.query({ name: 'geolocation' })).state);
    expect(await permission()).toBe('granted');
    // A second session of the same type while the first holds the kept context gets its own.
    const parallel = await pool.acquire({ reuseContext: 'checkout' });
    expect(parallel.context).not.toBe(a.context);
    await parallel.release();
    await a.release();

    const b = await pool.acquire({ reuseContext: 'checkout' });
    expect(b.context).toBe(a.context);
    expect(b.page).toBe(a.page);
    expect(b.page.url()).toBe('about:blank');
    expect(await b.context.cookies()).toEqual([]);
    await b.page.goto(page('simple.html'));
    expect(
      await b.page.evaluate(() => [document.cookie, localStorage.getItem('k'), sessionStorage.getItem('s')]),
    ).toEqual(['', null, null]);
    expect(await permission()).toBe('prompt');
    // The runner does not wait for a release: the next session of the type waits for the clearing.
    void b.release();
    const c = await pool.acquire({ reuseContext: 'checkout' });
    expect(c.context).toBe(a.context);
    expect(await c.context.cookies()).toEqual([]);
    await c.release();

    const other = await pool.acquire({ reuseContext: 'another-type' });
    expect(other.context).not.toBe(a.context);
    await other.release();
  });

  it('relaunches after the browser is SIGKILLed: the lease reports the crash, the next acquire works', async () => {
    const pool = await newPool();
    const lease = await pool.acquire();
    await lease.page.goto(page('simple.html'));
    const pid = pool.browserPid!;
    const dir = pool.browserDir!;
    expect(pgrep(dir)).toContain(pid);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => lease.crashed, { what: 'the lease to see the crash', timeoutMs: 10_000 });
    await lease.release();
    await waitFor(() => pgrep(dir).length === 0, { what: 'the killed browser tree to be gone' });
    await waitFor(() => !existsSync(dir), { what: 'the killed browser folder to be removed' });

    const next = await pool.acquire();
    expect(next.generation).toBe(2);
    expect(next.crashed).toBe(false);
    await next.page.goto(page('simple.html'));
    expect(await next.page.textContent('#text')).toBe('A simple page.');
    await next.release();
  });

  it('retires a browser after N contexts and closes it once its last context is released', async () => {
    const pool = await newPool({ maxContextsPerBrowser: 2 });
    const first = await pool.acquire();
    const firstDir = pool.browserDir!;
    const second = await pool.acquire();
    const third = await pool.acquire();
    expect([first.generation, second.generation, third.generation]).toEqual([1, 1, 2]);
    // The retired browser still serves its open sessions.
    await first.page.goto(page('simple.html'));
    expect(pgrep(firstDir).length).toBeGreaterThan(0);
    await first.release();
    await second.release();
    await waitFor(() => pgrep(firstDir).length === 0 && !existsSync(firstDir), {
      what: 'the retired browser to close',
    });
    await third.page.goto(page('simple.html'));
    await third.release();
  });

  it('retires a browser over its memory budget and measures Chromium PSS', async () => {
    const pool = await newPool({ memoryBudgetBytes: 1 });
    const bytes = await pool.browserMemoryBytes();
    expect(bytes).toBeGreaterThan(10 * 2 ** 20);
    await waitFor(
      async () => {
        const lease = await pool.acquire();
        await lease.release();
        return pool.generation > 1;
      },
      { what: 'a retirement over the memory budget', timeoutMs: 20_000, intervalMs: 200 },
    );
  });

  it('close() leaves no Chromium process and no temp folder', async () => {
    const pool = await newPool();
    const lease = await pool.acquire();
    await lease.page.goto(page('simple.html'));
    const dir = pool.browserDir!;
    const tree = await processTree(pool.browserPid!);
    expect(pgrep(dir)).toEqual([pool.browserPid]);
    expect(tree.length).toBeGreaterThan(2);
    await pool.close();
    expect(pgrep(dir)).toEqual([]);
    expect(tree.filter((pid) => isAlive(pid))).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    await expect(pool.acquire()).rejects.toThrow('the browser pool is closed');
  });

  it('a SIGKILLed owner process leaves no Chromium, and the next pool sweeps its folders', async () => {
    const root = await mkdtemp(join(tempDir, 'orphan-'));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('../fixtures/pool-child.ts', import.meta.url)), root],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const line = await waitFor(() => /^ready (\d+) (\S+)$/m.exec(out), {
      what: 'the child pool',
      timeoutMs: 30_000,
    });
    const [, pidText, dir] = line;
    const browserPid = Number(pidText);
    expect(pgrep(dir!)).toContain(browserPid);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    // Chromium exits when its control pipe closes; the folders stay until a pool sweeps them.
    await waitFor(() => pgrep(dir!).length === 0, {
      what: 'the orphaned Chromium to exit',
      timeoutMs: 10_000,
    });
    expect(existsSync(dir!)).toBe(true);
    const pool = await newPool({ tempDir: root, prewarm: false });
    expect(existsSync(dir!)).toBe(false);
    expect((await readdir(root)).filter((e) => e.startsWith('sfw-browser-'))).toEqual([
      pool.browserDir!.split('/').pop(),
    ]);
    await pool.close();
  });
});
