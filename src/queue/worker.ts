import { hostname } from 'node:os';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import { DEFAULT_WORKER_LIMITS } from '../core/defaults.js';
import { errorMessage, InvalidJobError } from '../core/errors.js';
import type { WorkerLimits } from '../core/types.js';
import { Storage } from '../io/storage/storage.js';
import { createRedis } from './connection.js';
import type { QueueContext } from './context.js';
import { type LockPolicy, lockPolicy, toJobError } from './job-options.js';
import { limitWarnings, resolveWorkerLimits } from './limits.js';
import { queueName, type Stage } from './names.js';
import { shardIdsOf } from './payloads.js';
import { PROCESSORS, type ProcessorContext, RunCache } from './processors.js';
import { type EngineSpec, loadEngines } from './stages.js';

export interface WorkerPoolOptions {
  stages: Stage[];
  engines: EngineSpec;
  /** Shard jobs one process works on at once (per stage). */
  concurrency: number;
  lock?: Partial<LockPolicy>;
  /** Storage settings for reading inputs and writing outputs. */
  storage?: Storage;
  /** Where the runs it serves may read and write (default: anywhere, with a warning). */
  limits?: WorkerLimits;
  log?: (line: string) => void;
  /**
   * Where each finished shard job's line goes (shard, pairs, kept, rate): the worker's record of
   * work done. Default: `log` when given, else stdout (diagnostics stay on stderr).
   */
  report?: (line: string) => void;
}

export interface WorkerPool {
  readonly workers: Worker[];
  /** Waits for active jobs, then closes workers, engines and connections. */
  close(): Promise<void>;
}

/**
 * Starts one BullMQ worker per requested stage in this process, sharing the engines: models are
 * loaded once, before any job is taken, and kept for the life of the process.
 */
export async function startWorkerPool(ctx: QueueContext, options: WorkerPoolOptions): Promise<WorkerPool> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const limits = await resolveWorkerLimits(options.limits ?? DEFAULT_WORKER_LIMITS);
  const storage = options.storage ?? new Storage();
  const engines = await loadEngines(options.stages, options.engines);
  const report = options.report ?? options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const runs = new RunCache(ctx, limits);
  const pc: ProcessorContext = { ctx, storage, engines, runs, limits, log, report };
  const settings: WorkerSettings = {
    lock: { ...lockPolicy(), ...options.lock },
    concurrency: options.concurrency,
    name: `${hostname()}:${process.pid}`,
  };
  const started = options.stages.map((stage) => stageWorker(pc, stage, settings));
  for (const { worker } of started) void worker.run();
  for (const line of limitWarnings(limits)) log(line);
  log(
    `capfilt: worker ${settings.name} serving ${options.stages.join(', ')} (concurrency ${options.concurrency})`,
  );
  return {
    workers: started.map((s) => s.worker),
    async close() {
      await Promise.all(started.map((s) => s.worker.close()));
      for (const s of started) s.connection.disconnect();
      await engines.close();
      storage.close();
    },
  };
}

interface WorkerSettings {
  lock: LockPolicy;
  concurrency: number;
  name: string;
}

/**
 * Runs a job's processor; when its last attempt fails (or it can never succeed), the shard is
 * recorded as failed in its run before BullMQ sees the error.
 */
async function runJob(pc: ProcessorContext, stage: Stage, job: Job): Promise<unknown> {
  try {
    return await PROCESSORS[stage](pc, job);
  } catch (err) {
    const jobErr = toJobError(err);
    const final = jobErr instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    // A payload that failed its schema names no run this worker may touch: its job's failure says why.
    const ids = err instanceof InvalidJobError ? null : shardIdsOf(job.data);
    if (final && ids)
      await pc.ctx.runs.markShardFailed(ids.runId, ids.shardId, `${stage}: ${errorMessage(err)}`);
    throw jobErr;
  }
}

/**
 * A job that stalled too often (its workers kept dying) fails without reaching runJob; it still
 * has to count as a failed shard so that its run can finish.
 */
function onFailed(pc: ProcessorContext, stage: Stage, job: Job | undefined, err: Error): void {
  pc.log(
    `capfilt: ${stage} job ${job?.id ?? '?'} failed (attempt ${job?.attemptsMade ?? '?'}): ${err.message}`,
  );
  const ids = shardIdsOf(job?.data);
  if (job?.finishedOn && /stalled/.test(err.message) && ids) {
    pc.ctx.runs
      .markShardFailed(ids.runId, ids.shardId, `${stage}: ${err.message}`)
      .catch((e: unknown) => pc.log(`capfilt: could not record the failure: ${errorMessage(e)}`));
  }
}

function stageWorker(pc: ProcessorContext, stage: Stage, settings: WorkerSettings) {
  // Its own connection: a worker blocks on it while waiting for jobs.
  const connection = createRedis(pc.ctx.redisUrl, { role: 'worker' });
  const worker = new Worker(queueName(stage), (job: Job) => runJob(pc, stage, job), {
    connection,
    prefix: pc.ctx.prefix,
    name: settings.name,
    concurrency: stage === 'produce' ? 1 : settings.concurrency,
    lockDuration: settings.lock.lockDuration,
    stalledInterval: settings.lock.stalledInterval,
    maxStalledCount: settings.lock.maxStalledCount,
    autorun: false,
  });
  worker.on('failed', (job, err) => onFailed(pc, stage, job, err));
  worker.on('error', (err) => pc.log(`capfilt: ${stage} worker: ${err.message}`));
  return { worker, connection };
}
