/**
 * Resident memory and CPU time of processes from /proc (Linux), for the server under test, its
 * cluster workers and the stores, without touching them.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICKS = 100; // USER_HZ on Linux

interface Stat { pid: number; ppid: number; comm: string; cpuSeconds: number }

function stat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const f = text.slice(close + 2).split(' ');
    // fields after comm: state(0) ppid(1) … utime(11) stime(12)
    return { pid, ppid: Number(f[1]), comm, cpuSeconds: (Number(f[11]) + Number(f[12])) / TICKS };
  } catch {
    return undefined;
  }
}

function allStats(): Stat[] {
  const out: Stat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(Number(name));
    if (s) out.push(s);
  }
  return out;
}

/** `pid` and all its descendants. */
export function processTree(pid: number): number[] {
  const stats = allStats();
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const s of stats) if (s.ppid === tree[i]) tree.push(s.pid);
  return tree.filter((p) => stats.some((s) => s.pid === p));
}

/** Descendants of `pid` whose command name is one of `names` (e.g. the store servers). */
export function descendantsNamed(pid: number, names: string[]): number[] {
  const stats = allStats();
  return processTree(pid).filter((p) => names.includes(stats.find((s) => s.pid === p)?.comm ?? ''));
}

/**
 * KiB read from block devices by the whole machine so far (`pgpgin` of /proc/vmstat): reads that
 * missed the page cache. Undefined where the kernel does not say.
 */
export function diskReadKiB(): number | undefined {
  try {
    const match = /^pgpgin (\d+)$/m.exec(readFileSync('/proc/vmstat', 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) used so far by these processes together. */
export function cpuSeconds(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (stat(pid)?.cpuSeconds ?? 0), 0);
}

/**
 * Resident set size in bytes, summed over these processes: VmRSS (everything resident), or
 * RssAnon (the processes' own memory, without file pages such as SQLite's memory map, which the
 * kernel drops under pressure).
 */
export function rssBytes(pids: number[], field: 'VmRSS' | 'RssAnon' = 'VmRSS'): number {
  let total = 0;
  const pattern = new RegExp(`${field}:\\s+(\\d+) kB`);
  for (const pid of pids) {
    try {
      const m = pattern.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // gone
    }
  }
  return total;
}

/** CPU use of a set of processes over a window: cores = CPU seconds / wall seconds. */
export class CpuMeter {
  readonly #pids: () => number[];
  #startCpu = 0;
  #startWall = 0;
  constructor(pids: () => number[]) {
    this.#pids = pids;
  }
  start(): void {
    this.#startCpu = cpuSeconds(this.#pids());
    this.#startWall = performance.now();
  }
  /** Cores used since start(). */
  cores(): number {
    const wall = (performance.now() - this.#startWall) / 1000;
    return wall > 0 ? (cpuSeconds(this.#pids()) - this.#startCpu) / wall : 0;
  }
}
