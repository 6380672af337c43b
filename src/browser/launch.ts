import { rm } from 'node:fs/promises';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { chromiumArgs, egressArgs } from './chromium.js';
import type { EgressProxy } from './egress.js';
import { attachEgress } from './egress-page.js';
import { featureArgs } from './features.js';
import { createBrowserDir, recordBrowser, removeBrowserDir } from './folders.js';
import { findPidsByArg, killGroup, procCmdline, processTree, procStat, reapTree } from './procfs.js';

/** A browser that has not closed by then is killed. */
const CLOSE_TIMEOUT_MS = 10_000;
/** How long Chromium's helpers get to exit after it closed before they are killed. */
const REAP_TIMEOUT_MS = 2000;

export interface LaunchOptions {
  executablePath: string;
  headless?: boolean;
  /** Folder for the per-browser folders. */
  tempRoot: string;
  launchTimeoutMs?: number;
  /** A started egress proxy: the browser then connects through it only (see egressArgs). */
  egress?: EgressProxy;
}

/** One launched Chromium. */
export interface Instance {
  generation: number;
  browser: Browser;
  dir: string;
  pid: number | undefined;
  profileDir: string | undefined;
  contextsCreated: number;
  contexts: Set<BrowserContext>;
  retired: boolean;
  disconnected: boolean;
  /** The egress proxy the browser connects through, if any (a context's own proxy is chained to it). */
  egress: EgressProxy | undefined;
  /** Rejects when the browser disconnects: calls in flight then may never settle on their own. */
  gone: Promise<never>;
  closing: Promise<void> | undefined;
}

/**
 * Starts Chromium in a folder of its own, its signals left to the runner (it drains sessions before
 * closing the pool). `onDisconnected` runs when the browser's connection ends, for whatever reason.
 */
export async function launchBrowser(
  opts: LaunchOptions,
  generation: number,
  onDisconnected: (inst: Instance) => void,
): Promise<Instance> {
  const dir = await createBrowserDir(opts.tempRoot);
  const cacheArg = `--disk-cache-dir=${dir.cacheDir}`;
  let browser: Browser;
  try {
    const features = await featureArgs(opts.tempRoot);
    browser = await chromium.launch({
      executablePath: opts.executablePath,
      headless: opts.headless ?? true,
      args: [
        ...chromiumArgs(),
        ...(opts.egress ? egressArgs(opts.egress.port) : []),
        ...features.args,
        cacheArg,
      ],
      ignoreDefaultArgs: features.ignoreDefaultArgs,
      artifactsDir: dir.artifactsDir,
      chromiumSandbox: typeof process.getuid === 'function' && process.getuid() !== 0,
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      timeout: opts.launchTimeoutMs ?? 30_000,
    });
  } catch (err) {
    await rm(dir.path, { recursive: true, force: true });
    throw err;
  }
  if (opts.egress) attachEgress(browser, opts.egress);
  const pid = findPidsByArg(cacheArg).find((p) => procStat(p)?.ppid === process.pid);
  const profileDir = pid === undefined ? undefined : argValue(procCmdline(pid), '--user-data-dir');
  await recordBrowser(dir, pid, profileDir);
  let onGone = () => {};
  const gone = new Promise<never>((_, reject) => {
    onGone = () => reject(new Error('the browser disconnected'));
  });
  gone.catch(() => {});
  const inst: Instance = {
    generation,
    browser,
    dir: dir.path,
    pid,
    profileDir,
    contextsCreated: 0,
    contexts: new Set(),
    egress: opts.egress,
    retired: false,
    disconnected: false,
    gone,
    closing: undefined,
  };
  browser.on('disconnected', () => {
    onGone();
    onDisconnected(inst);
  });
  return inst;
}

/** Closes the browser (killing it after CLOSE_TIMEOUT_MS), reaps its helper processes, removes its folders. */
export async function closeBrowser(inst: Instance): Promise<void> {
  // Chromium's helpers are reparented when it exits: note them now to make sure they go too.
  const tree = inst.pid === undefined ? [] : await processTree(inst.pid);
  const procs = tree.map((pid) => procStat(pid)).filter((p) => p !== undefined);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    inst.browser.close().catch(() => {}),
    new Promise((r) => (timer = setTimeout(r, CLOSE_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  await reapTree(procs, REAP_TIMEOUT_MS);
  await removeBrowser(inst);
}

/** Kills whatever is left of the browser's process group and removes its folders. */
export async function removeBrowser(inst: Instance): Promise<void> {
  // The pid is checked against the folder first: it may belong to another process by now.
  if (inst.pid !== undefined && procCmdline(inst.pid).some((a) => a.includes(inst.dir))) {
    killGroup(inst.pid);
  }
  await removeBrowserDir(inst.dir, inst.profileDir);
}

function argValue(args: string[], name: string): string | undefined {
  const hit = args.find((a) => a.startsWith(`${name}=`));
  return hit?.slice(name.length + 1);
}
