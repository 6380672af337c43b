import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { findPidsByArg, isAlive, killGroup, procStat } from './procfs.js';

/**
 * Each launched browser gets a folder of its own (cache, artifacts) with an owner record naming the
 * process that launched it and, once started, Chromium's pid and profile folder. The record is what lets
 * a later pool tell the leftovers of a killed process from a live pool's browser.
 */

const TEMP_PREFIX = 'sfw-browser-';
const OWNER_FILE = 'owner.json';
/** A folder without an owner record younger than this may belong to a launch still under way. */
const UNOWNED_GRACE_MS = 10 * 60_000;

interface OwnerRecord {
  ownerPid: number;
  ownerStart?: string;
  browserPid?: number;
  profileDir?: string;
}

export interface BrowserDir {
  path: string;
  cacheDir: string;
  artifactsDir: string;
  owner: OwnerRecord;
}

/** A fresh browser folder under `root`, owned by this process. */
export async function createBrowserDir(root: string): Promise<BrowserDir> {
  const path = await mkdtemp(join(root, TEMP_PREFIX));
  const owner: OwnerRecord = { ownerPid: process.pid, ownerStart: procStat(process.pid)?.startTime };
  await writeFile(join(path, OWNER_FILE), JSON.stringify(owner));
  const artifactsDir = join(path, 'artifacts');
  await mkdir(artifactsDir);
  return { path, cacheDir: join(path, 'cache'), artifactsDir, owner };
}

/** Adds the started Chromium's pid and profile folder to the owner record, for the sweep. */
export async function recordBrowser(
  dir: BrowserDir,
  browserPid: number | undefined,
  profileDir: string | undefined,
): Promise<void> {
  await writeFile(join(dir.path, OWNER_FILE), JSON.stringify({ ...dir.owner, browserPid, profileDir }));
}

/** Removes a browser folder and the profile folder Playwright made for it (only one it made). */
export async function removeBrowserDir(path: string, profileDir: string | undefined): Promise<void> {
  if (profileDir && /^playwright_chromium(dev)?_profile-/.test(basename(profileDir))) {
    await rm(profileDir, { recursive: true, force: true }).catch(() => {});
  }
  await rm(path, { recursive: true, force: true }).catch(() => {});
}

/**
 * Removes what a killed process left behind: for each browser folder whose owning process is gone, its
 * Chromium (if one survived) and its folders. Returns how many were removed.
 */
export async function sweepLeftovers(root: string = tmpdir()): Promise<number> {
  let entries: string[];
  try {
    entries = (await readdir(root)).filter((e) => e.startsWith(TEMP_PREFIX));
  } catch {
    return 0;
  }
  let swept = 0;
  for (const entry of entries) {
    const dir = join(root, entry);
    let owner: OwnerRecord | undefined;
    try {
      owner = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as OwnerRecord;
    } catch {
      // No owner file: a launch interrupted before writing it. Leave young folders to their launcher.
      const age = await stat(dir).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age < UNOWNED_GRACE_MS) continue;
    }
    if (owner && isAlive(owner.ownerPid, owner.ownerStart)) continue;
    for (const pid of findPidsByArg(dir)) killGroup(pid);
    await removeBrowserDir(dir, owner?.profileDir);
    swept++;
  }
  return swept;
}
