import { readFileSync, readdirSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';

/** Linux /proc helpers for the browser pool: find Chromium's processes, measure them, kill leftovers. */

interface ProcInfo {
  pid: number;
  /** R, S, D, Z (zombie: exited, not yet reaped)… */
  state: string;
  ppid: number;
  startTime: string;
}

function parseStat(text: string, pid: number): ProcInfo | undefined {
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const end = text.lastIndexOf(')');
  if (end < 0) return undefined;
  const fields = text.slice(end + 2).split(' ');
  const ppid = Number(fields[1]);
  const startTime = fields[19];
  if (!Number.isFinite(ppid) || startTime === undefined) return undefined;
  return { pid, state: fields[0] ?? '?', ppid, startTime };
}

function listPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    return [];
  }
}

export function procStat(pid: number): ProcInfo | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'), pid);
  } catch {
    return undefined;
  }
}

export function procCmdline(pid: number): string[] {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    // Chromium's helper processes rewrite their title: one string, arguments joined by spaces.
    return args.length === 1 && args[0]!.includes(' --') ? args[0]!.split(' ') : args;
  } catch {
    return [];
  }
}

/** Processes whose command line contains `marker`. */
export function findPidsByArg(marker: string): number[] {
  return listPids().filter((pid) => pid !== process.pid && procCmdline(pid).some((a) => a.includes(marker)));
}

/** `root` and all its descendants. */
export async function processTree(root: number): Promise<number[]> {
  let dirs: string[];
  try {
    dirs = (await readdir('/proc')).filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  await Promise.all(
    dirs.map(async (d) => {
      try {
        const info = parseStat(await readFile(`/proc/${d}/stat`, 'utf8'), Number(d));
        if (!info) return;
        const list = children.get(info.ppid);
        if (list) list.push(info.pid);
        else children.set(info.ppid, [info.pid]);
      } catch {
        // the process ended while we looked
      }
    }),
  );
  if (!dirs.includes(String(root))) return [];
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Proportional set size of one process in bytes (shared pages split among their users), 0 if gone. */
export async function pssBytes(pid: number): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = /^Pss:\s+(\d+) kB/m.exec(text)?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

export async function treePssBytes(root: number): Promise<number> {
  const pids = await processTree(root);
  const sizes = await Promise.all(pids.map(pssBytes));
  return sizes.reduce((a, b) => a + b, 0);
}

export function isAlive(pid: number, startTime?: string): boolean {
  const info = procStat(pid);
  if (!info || info.state === 'Z' || info.state === 'X') return false;
  return startTime === undefined || info.startTime === startTime;
}

/** SIGKILL a process group (Playwright starts Chromium as a group leader), then the process itself. */
export function killGroup(pid: number): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Waits up to `ms` for the processes to exit, then SIGKILLs those left (same start time only). */
export async function reapTree(
  procs: ReadonlyArray<{ pid: number; startTime: string }>,
  ms: number,
): Promise<void> {
  const deadline = Date.now() + ms;
  let left = procs.filter((p) => isAlive(p.pid, p.startTime));
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    left = left.filter((p) => isAlive(p.pid, p.startTime));
  }
  for (const p of left) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}
