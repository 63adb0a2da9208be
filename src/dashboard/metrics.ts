import type { Queue } from 'bullmq';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { RunProgress, RunStore } from '../queue/runs.js';

const JOB_STATES = [
  'waiting',
  'active',
  'delayed',
  'completed',
  'failed',
  'waiting-children',
  'prioritized',
] as const;

/**
 * Prometheus metrics read from Redis at scrape time, so any number of dashboards (or none) can
 * run without double counting: queue depths per state, and per-run shard/sample/kept counts.
 */
export function createMetrics(queues: Queue[], runs: RunStore, recentRuns = 20): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'capfilt_dashboard_' });

  new Gauge({
    name: 'capfilt_queue_jobs',
    help: 'Jobs in each capfilt queue by state',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      await Promise.all(
        queues.map(async (q) => {
          const counts = await q.getJobCounts(...JOB_STATES);
          for (const state of JOB_STATES) this.set({ queue: q.name, state }, counts[state] ?? 0);
        }),
      );
    },
  });

  // One read of the recent runs per scrape, shared by the run gauges below.
  let scrape: Promise<RunProgress[]> | null = null;
  const progress = () => {
    scrape ??= runs.recent(recentRuns).finally(() =>
      setImmediate(() => {
        scrape = null;
      }),
    );
    return scrape;
  };
  const runGauge = (name: string, help: string, pick: (p: RunProgress) => [string, number][]) =>
    new Gauge({
      name,
      help,
      labelNames: ['run', 'kind'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of await progress())
          for (const [kind, v] of pick(p)) this.set({ run: p.runId, kind }, v);
      },
    });
  runGauge('capfilt_run_shards', 'Shards of a run by state', (p) => [
    ['total', p.shardsTotal],
    ['done', p.shardsDone],
    ['failed', p.shardsFailed],
    ['skipped', p.shardsSkipped],
  ]);
  runGauge('capfilt_run_samples', 'Samples of a run by outcome', (p) => [
    ['total', p.samples],
    ['ok', p.ok],
    ['rejected', p.rejected],
    ['web_kept', p.webKept],
    ['synthetic_kept', p.syntheticKept],
    ['synthetic_total', p.syntheticTotal],
  ]);
  runGauge('capfilt_run_samples_per_second', 'Throughput of a run', (p) => [['all', p.samplesPerSecond]]);
  return registry;
}
