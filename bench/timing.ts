/** Timings that stay readable on a shared machine: wall time and the process's CPU time. */

export interface Stats {
  min: number;
  median: number;
  max: number;
}

export function stats(xs: readonly number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor((s.length - 1) / 2)], max: s[s.length - 1] };
}

export interface Timing {
  wallMs: Stats;
  /**
   * User + system CPU time of all the process's threads. Other processes taking the cores stretch
   * wall time but not this, so work per CPU-second stays comparable under load.
   */
  cpuMs: Stats;
}

/** Time `fn` `runs` times after `warmup` untimed runs. */
export async function timeRuns(fn: () => Promise<unknown>, runs: number, warmup = 0): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < Math.max(1, runs); i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { wallMs: stats(wall), cpuMs: stats(cpu) };
}
