// CPU time and peak memory of processes, read from /proc (Linux).
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux build this runs on

interface ProcStat {
  ppid: number;
  /** utime + stime, own threads only. */
  cpuSeconds: number;
  /** cutime + cstime: children that exited and were reaped. */
  reapedChildrenCpuSeconds: number;
}

/** `/proc/<pid>/stat`, or with a path `<pid>/task/<tid>`, one thread's. */
function readStat(pid: number | string): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may contain spaces and parentheses; fields resume after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n: number) => Number(fields[n - 3]);
  return {
    ppid: field(4),
    cpuSeconds: (field(14) + field(15)) / TICKS_PER_SECOND,
    reapedChildrenCpuSeconds: (field(16) + field(17)) / TICKS_PER_SECOND,
  };
}

/**
 * CPU seconds used so far by the threads of `pid` whose name matches `name` (Linux keeps the first
 * 15 characters of a thread's name: a JVM's JIT compilers are "C1 CompilerThre" and "C2 CompilerThre").
 */
export function threadsCpuSeconds(pid: number, name: RegExp): number {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let total = 0;
  for (const tid of tids) {
    let comm: string;
    try {
      comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    } catch {
      continue; // the thread ended meanwhile
    }
    if (name.test(comm)) total += readStat(`${pid}/task/${tid}`)?.cpuSeconds ?? 0;
  }
  return total;
}

/** CPU seconds a process has used so far (0 once it is gone). */
export function cpuSeconds(pid: number): number {
  return readStat(pid)?.cpuSeconds ?? 0;
}

/** CPU seconds of this process's reaped children, e.g. a k6 run that has exited. */
export function reapedChildrenCpuSeconds(): number {
  return readStat(process.pid)?.reapedChildrenCpuSeconds ?? 0;
}

/** A process and all its live descendants (PostgreSQL's backends, for example). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    const siblings = children.get(stat.ppid) ?? [];
    siblings.push(Number(entry));
    children.set(stat.ppid, siblings);
  }
  const tree: number[] = [];
  const visit = (pid: number) => {
    tree.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return tree;
}

/** CPU seconds of a whole tree, including children it already reaped. */
export function treeCpuSeconds(root: number): number {
  const rootStat = readStat(root);
  const reaped = rootStat?.reapedChildrenCpuSeconds ?? 0;
  return processTree(root).reduce((total, pid) => total + cpuSeconds(pid), reaped);
}

/** Resident set size now (VmRSS) in MB, or 0 when the process is gone. */
export function residentMb(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Peak resident set size (VmHWM) in MB, or 0 when the process is gone. */
export function peakRssMb(pid: number): number {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds the whole machine has spent busy (every core, every process), from /proc/stat. */
export function machineBusyCpuSeconds(): number {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user, nice, system, , , irq, softirq, steal] = fields.map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / TICKS_PER_SECOND;
}
