import { hostname } from 'node:os';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import { errorMessage } from '../core/errors.js';
import type { RunOptions } from '../core/types.js';
import { Storage } from '../io/storage/storage.js';
import { createRedis } from './connection.js';
import type { QueueContext } from './context.js';
import { type LockPolicy, lockPolicy, toJobError } from './job-options.js';
import { queueName, type Stage } from './names.js';
import { type ProduceRequest, produceRun, type ShardJobData } from './produce.js';
import type { RunRecord } from './runs.js';
import { type Carried, carry, discard, spillUri, unwrap } from './spill.js';
import {
  type CaptionStageResult,
  captionStage,
  type EngineSpec,
  filterStage,
  fusedStage,
  loadEngines,
  type ModelStageResult,
  type StageEngines,
  writeStage,
} from './stages.js';
import { writeRunSummary } from './summary.js';

/** Data of a `produce` job (scheduled re-runs). */
export interface ProduceJobData extends Omit<ProduceRequest, 'runId' | 'policy'> {
  /** Run id prefix; each firing appends its time. */
  runPrefix?: string;
}

export interface WorkerPoolOptions {
  stages: Stage[];
  engines: EngineSpec;
  /** Shard jobs one process works on at once (per stage). */
  concurrency: number;
  lock?: Partial<LockPolicy>;
  /** Storage settings for reading inputs and writing outputs. */
  storage?: Storage;
  log?: (line: string) => void;
}

export interface WorkerPool {
  readonly workers: Worker[];
  /** Waits for active jobs, then closes workers, engines and connections. */
  close(): Promise<void>;
}

/** The run's options as produce recorded them, cached per process. */
class RunCache {
  readonly #runs = new Map<string, RunRecord<RunOptions>>();
  constructor(private readonly ctx: QueueContext) {}
  async get(runId: string): Promise<RunRecord<RunOptions>> {
    const hit = this.#runs.get(runId);
    if (hit) return hit;
    const run = await this.ctx.runs.get<RunOptions>(runId);
    // Without its run record a job cannot know its options: retrying will not help.
    if (!run) throw new UnrecoverableError(`run ${runId} is not recorded in Redis`);
    if (this.#runs.size > 64) this.#runs.delete(this.#runs.keys().next().value as string);
    this.#runs.set(runId, run);
    return run;
  }
}

/**
 * When a produce job was due: a scheduler's job id ends in its firing time (`repeat:<id>:<ms>`),
 * unique per firing and the same on a retry, so the firing's run id is stable. (The job's
 * timestamp is when it was created, right after the previous firing: not unique.)
 */
export function firingStamp(job: Pick<Job, 'id' | 'timestamp'>): string {
  const last = job.id?.split(':').pop() ?? '';
  const ms = /^\d{10,}$/.test(last) ? Number(last) : job.timestamp;
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace('.', '');
}

function childValue<T>(values: Record<string, unknown>, stage: Stage): T {
  const entry = Object.entries(values).find(([key]) => key.includes(`:${queueName(stage)}:`));
  if (!entry) throw new Error(`missing result of the ${stage} stage`);
  return entry[1] as T;
}

/**
 * Starts one BullMQ worker per requested stage in this process, sharing the engines: models are
 * loaded once, before any job is taken, and kept for the life of the process.
 */
export async function startWorkerPool(ctx: QueueContext, options: WorkerPoolOptions): Promise<WorkerPool> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const storage = options.storage ?? new Storage();
  const engines: StageEngines = await loadEngines(options.stages, options.engines);
  const runs = new RunCache(ctx);
  const lock = { ...lockPolicy(), ...options.lock };
  const name = `${hostname()}:${process.pid}`;

  const shardJob = async (job: Job) => {
    const data = job.data as ShardJobData;
    return { data, run: await runs.get(data.runId) };
  };
  const carryResult = <T>(stage: Stage, data: ShardJobData, run: RunRecord, result: T) =>
    carry(storage, spillUri(run.output, run.runId, stage, data.shard.id), result);

  /** Writes the shard's output, then counts it in its run; spill files go only after that. */
  const writeShard = async (job: Job, data: ShardJobData, run: RunRecord<RunOptions>) => {
    const carried = childValue<Carried<ModelStageResult>>(
      await job.getChildrenValues(),
      run.mode === 'fused' ? 'fused' : 'filter',
    );
    const { stats, summary } = await writeStage(storage, run, data.shard, await unwrap(storage, carried));
    await ctx.runs.recordFingerprint(run.output, data.shard.id, data.fingerprint);
    // Counted once per shard even if this job is delivered twice.
    const marked = await ctx.runs.markShardDone(data.runId, data.shard.id, summary);
    const spills: Carried<unknown>[] = [carried];
    const captionSpill = (carried as { captionSpill?: string }).captionSpill;
    if (captionSpill) spills.push({ spilled: captionSpill, bytes: 0 });
    await discard(storage, spills);
    return {
      marked,
      written: { records: stats.records, status: stats.status, kept: stats.kept, wallMs: stats.wallMs },
    };
  };

  const processors: Record<Stage, (job: Job) => Promise<unknown>> = {
    produce: async (job) => {
      const data = job.data as ProduceJobData;
      const runId = `${data.runPrefix ?? data.scheduleId ?? 'run'}-${firingStamp(job)}`;
      const result = await produceRun(ctx, storage, { ...data, runId });
      log(
        result.busy
          ? `capfilt: ${runId} skipped: run ${result.runId} of the same schedule is still going`
          : `capfilt: produced ${result.runId}: ${result.enqueued} shards enqueued, ${result.skipped} skipped`,
      );
      return result;
    },
    caption: async (job) => {
      const { data, run } = await shardJob(job);
      return await carryResult('caption', data, run, await captionStage(storage, data.shard, run, engines));
    },
    filter: async (job) => {
      const { data, run } = await shardJob(job);
      const carried = childValue<Carried<CaptionStageResult>>(await job.getChildrenValues(), 'caption');
      const result = await filterStage(storage, data.shard, run, await unwrap(storage, carried), engines);
      const own = await carryResult('filter', data, run, result);
      // The writer removes the captions' spill file too, once the shard is written.
      return 'spilled' in carried ? { ...own, captionSpill: carried.spilled } : own;
    },
    fused: async (job) => {
      const { data, run } = await shardJob(job);
      return await carryResult('fused', data, run, await fusedStage(storage, data.shard, run, engines));
    },
    write: async (job) => {
      const { data, run } = await shardJob(job);
      // A shard already counted was written by an earlier delivery of this job, whose worker died
      // before the job completed; its spill files may be gone, so only the summary can be missing.
      const { marked, written } = (await ctx.runs.isShardDone(data.runId, data.shard.id))
        ? { marked: 'duplicate' as const, written: { alreadyWritten: true } }
        : await writeShard(job, data, run);
      if (marked === 'completed' || (marked === 'duplicate' && (await ctx.runs.summaryPending(data.runId)))) {
        const uri = await writeRunSummary(storage, run);
        await ctx.runs.markCompleted(data.runId);
        log(`capfilt: run ${run.runId} complete: ${uri}`);
      }
      return written;
    },
  };

  const connections: ReturnType<typeof createRedis>[] = [];
  const workers = options.stages.map((stage) => {
    const processor = processors[stage];
    // Its own connection: a worker blocks on it while waiting for jobs.
    const connection = createRedis(ctx.redisUrl, { role: 'worker' });
    connections.push(connection);
    const worker = new Worker(
      queueName(stage),
      async (job: Job) => {
        try {
          return await processor(job);
        } catch (err) {
          const jobErr = toJobError(err);
          const final =
            jobErr instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
          const data = job.data as Partial<ShardJobData>;
          if (final && data.runId && data.shard) {
            await ctx.runs.markShardFailed(data.runId, data.shard.id, `${stage}: ${errorMessage(err)}`);
          }
          throw jobErr;
        }
      },
      {
        connection,
        prefix: ctx.prefix,
        name,
        concurrency: stage === 'produce' ? 1 : options.concurrency,
        lockDuration: lock.lockDuration,
        stalledInterval: lock.stalledInterval,
        maxStalledCount: lock.maxStalledCount,
        autorun: false,
      },
    );
    worker.on('failed', (job, err) => {
      log(
        `capfilt: ${stage} job ${job?.id ?? '?'} failed (attempt ${job?.attemptsMade ?? '?'}): ${err.message}`,
      );
      // A job that stalled too often (its workers kept dying) fails without reaching the
      // processor above; it still has to count as a failed shard so its run can finish.
      const data = job?.data as Partial<ShardJobData> | undefined;
      if (job?.finishedOn && /stalled/.test(err.message) && data?.runId && data.shard) {
        ctx.runs
          .markShardFailed(data.runId, data.shard.id, `${stage}: ${err.message}`)
          .catch((e: unknown) => log(`capfilt: could not record the failure: ${errorMessage(e)}`));
      }
    });
    worker.on('error', (err) => log(`capfilt: ${stage} worker: ${err.message}`));
    return worker;
  });
  for (const w of workers) void w.run();
  log(`capfilt: worker ${name} serving ${options.stages.join(', ')} (concurrency ${options.concurrency})`);

  return {
    workers,
    async close() {
      await Promise.all(workers.map((w) => w.close()));
      for (const c of connections) c.disconnect();
      await engines.close();
      storage.close();
    },
  };
}
