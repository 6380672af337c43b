import { readFileSync, readdirSync } from 'node:fs';

/** Memory of a process tree from /proc: RSS of one process, PSS (smaps_rollup) summed over descendants. */

/** The parent pid of a live process (undefined once it is gone). */
export function parentOf(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

export function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** All live descendants of `root` (not `root` itself). */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    const ppid = parentOf(pid);
    if (ppid === undefined) continue;
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [...(children.get(root) ?? [])];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

function fieldKb(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

export function rssBytes(pid: number): number {
  try {
    return fieldKb(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS') * 1024;
  } catch {
    return 0;
  }
}

export function pssBytes(pid: number): number {
  try {
    return fieldKb(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss') * 1024;
  } catch {
    return 0;
  }
}

export function isChromium(pid: number): boolean {
  const c = commOf(pid);
  return c.startsWith('chrom') || c.startsWith('headless_shell');
}

/** Chromium processes under `root` and their summed PSS. */
export function chromiumPss(root: number): { processes: number; bytes: number } {
  const pids = descendants(root).filter(isChromium);
  return { processes: pids.length, bytes: pids.reduce((a, p) => a + pssBytes(p), 0) };
}

export const MB = 1024 * 1024;

const TICK = 100; // USER_HZ on Linux

/** CPU seconds used by `root` and its live descendants, plus everything they have reaped. */
export function treeCpuSeconds(root: number): number {
  let ticks = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      /* exited meanwhile */
    }
  }
  return ticks / TICK;
}

/** CPU seconds of this process. */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** CPU seconds per named component between start and stop; 'self' is this process. */
export function cpuMeter(all: Record<string, number | 'self' | undefined>): () => Record<string, number> {
  // A component whose process we do not know (an external Postgres) is left out.
  const components = Object.fromEntries(
    Object.entries(all).filter((e): e is [string, number | 'self'] => e[1] === 'self' || (e[1] ?? 0) > 0),
  );
  const read = () =>
    Object.fromEntries(
      Object.entries(components).map(([k, pid]) => [
        k,
        pid === 'self' ? selfCpuSeconds() : treeCpuSeconds(pid),
      ]),
    );
  const start = read();
  return () => {
    const end = read();
    return Object.fromEntries(Object.keys(components).map((k) => [k, end[k]! - start[k]!]));
  };
}
