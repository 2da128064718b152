/**
 * CPU time of a process's threads from /proc (Linux), so a phase can be measured in CPU rather
 * than wall time: the busiest thread is the isolate's (workerd runs one), the rest is mostly V8's
 * background compilation and GC. Resolution is the clock tick (10 ms).
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10;

/** CPU milliseconds (user + system) of each thread of `pid`, by thread id; empty if it is gone. */
export function threadCpu(pid: number): Map<number, number> {
  const threads = new Map<number, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      threads.set(Number(tid), (Number(fields[11]) + Number(fields[12])) * TICK_MS);
    }
  } catch {
    // the process or one of its threads went away
  }
  return threads;
}

/** CPU spent between two samples: by the busiest thread, and by all threads together. */
export function cpuSpent(before: Map<number, number>, after: Map<number, number>): { busiest: number; total: number } {
  let busiest = 0;
  let total = 0;
  for (const [tid, ms] of after) {
    const spent = ms - (before.get(tid) ?? 0);
    total += spent;
    busiest = Math.max(busiest, spent);
  }
  return { busiest, total };
}
