import type { Command } from 'commander';
import { DEFAULT_QUEUE } from '../core/defaults.js';
import { UsageError } from '../core/errors.js';
import { Storage } from '../io/storage/storage.js';
import { isStage, STAGES, type Stage } from '../queue/names.js';
import { onShutdown } from '../queue/shutdown.js';
import { startWorkerPool } from '../queue/worker.js';
import { addConnectionFlags, type ConnectionFlags, openContext } from './connection.js';
import {
  addEngineFlags,
  addS3Flags,
  addWorkerLimitFlags,
  type EngineFlags,
  engineFromFlags,
  positiveInt,
  type S3Flags,
  s3FromFlags,
  type WorkerLimitFlags,
  workerLimitsFromFlags,
} from './flags.js';

export interface WorkerCommandOptions extends ConnectionFlags, EngineFlags, S3Flags, WorkerLimitFlags {
  stage: string;
  captioner?: string;
  filter?: string;
  concurrency: number;
  lockDuration?: number;
  shutdownGrace: number;
}

export function parseStages(text: string): Stage[] {
  const stages = new Set<Stage>();
  for (const p of text.split(',').map((s) => s.trim())) {
    if (p === 'all') for (const s of STAGES) stages.add(s);
    else if (isStage(p)) stages.add(p);
    else throw new UsageError(`unknown stage ${p}: use caption, filter, write, fused, produce or all`);
  }
  return [...stages];
}

async function workerCommand(o: WorkerCommandOptions): Promise<void> {
  const stages = parseStages(o.stage);
  const engine = engineFromFlags(o);
  const limits = workerLimitsFromFlags(o);
  const ctx = await openContext(o, 'worker');
  const storage = new Storage({ s3: s3FromFlags(o) });
  const lock = o.lockDuration
    ? { lock: { lockDuration: o.lockDuration, stalledInterval: Math.max(1_000, o.lockDuration / 2) } }
    : {};
  const pool = await startWorkerPool(ctx, {
    stages,
    engines: { captionerDir: o.captioner, filterDir: o.filter, ...engine },
    concurrency: o.concurrency,
    storage,
    limits,
    ...lock,
  }).catch(async (err: unknown) => {
    // A worker connection reconnects forever: left open, it would keep the failed process alive.
    storage.close();
    await ctx.close();
    throw err;
  });
  onShutdown([() => pool.close(), () => ctx.close()], { graceMs: o.shutdownGrace });
}

/** `capfilt worker`: serve stages as a member of a pool (models load once). */
export function registerWorker(program: Command): void {
  const cmd = program
    .command('worker')
    .description('serve one or more stages as a pool member (models load once)')
    .requiredOption('--stage <stages>', 'caption, filter, write, fused, produce, all, or a comma list')
    .option('--captioner <dir>', 'converted captioner model (caption, fused)')
    .option('--filter <dir>', 'converted filter model (filter, fused)')
    .option(
      '--concurrency <n>',
      'shard jobs in flight per stage',
      positiveInt,
      DEFAULT_QUEUE.workerConcurrency,
    )
    .option(
      '--lock-duration <ms>',
      `job lock lifetime (default ${DEFAULT_QUEUE.lockDurationMs}); must exceed twice the longest model call`,
      positiveInt,
    )
    .option(
      '--shutdown-grace <ms>',
      'on SIGTERM, how long active shards may finish before the worker exits (then they are taken over)',
      positiveInt,
      DEFAULT_QUEUE.shutdownGraceMs,
    );
  // Unset, --batch-size keeps the run's own.
  addWorkerLimitFlags(addS3Flags(addEngineFlags(addConnectionFlags(cmd), 'override')));
  cmd.action(workerCommand);
}
