import type { QueueContext } from './context.js';
import { STAGES } from './names.js';
import type { RunProgress } from './runs.js';

export interface StatusReport {
  queues: Record<string, Record<string, number>>;
  runs: RunProgress[];
}

export async function collectStatus(ctx: QueueContext, runId?: string, limit = 10): Promise<StatusReport> {
  const [queues, runs] = await Promise.all([
    Promise.all(STAGES.map(async (s) => [s, await ctx.queue(s).getJobCounts()] as const)),
    runId ? ctx.runs.progress(runId).then((p) => (p ? [p] : [])) : ctx.runs.recent(limit),
  ]);
  return { queues: Object.fromEntries(queues), runs };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function formatStatus(report: StatusReport): string {
  const lines: string[] = [];
  lines.push('queues:');
  for (const [name, c] of Object.entries(report.queues)) {
    lines.push(
      `  ${name.padEnd(8)} waiting ${c.waiting ?? 0}  active ${c.active ?? 0}  delayed ${c.delayed ?? 0}  ` +
        `waiting-children ${c['waiting-children'] ?? 0}  completed ${c.completed ?? 0}  failed ${c.failed ?? 0}`,
    );
  }
  if (report.runs.length === 0) lines.push('no runs');
  for (const r of report.runs) {
    const state = r.completedAt ? (r.shardsFailed > 0 ? 'done with failures' : 'complete') : 'running';
    lines.push(
      `run ${r.runId} [${state}] ${r.mode}  ${r.input} -> ${r.output}`,
      `  shards ${r.shardsDone}/${r.shardsTotal} done, ${r.shardsFailed} failed, ${r.shardsSkipped} skipped (unchanged)`,
      `  samples ${r.samples} (ok ${r.ok}, rejected ${r.rejected})  ${r.samplesPerSecond.toFixed(1)} samples/s`,
      `  kept: web ${pct(r.webKeptRatio)} of ok pairs, synthetic ${pct(r.syntheticKeptRatio)} of captions`,
    );
    for (const f of r.failures.slice(0, 20)) lines.push(`  failed ${f.shardId}: ${f.error}`);
    if (r.failures.length > 20) lines.push(`  … ${r.failures.length - 20} more failures`);
  }
  return `${lines.join('\n')}\n`;
}
