/**
 * What a worker does with each kind of job, one named function per stage. They compose the
 * stage functions of queue/stages.ts (themselves the pipeline's) and move results between jobs:
 * inline in Redis when small, as spill files otherwise.
 */
import { hostname } from 'node:os';
import { type Job, UnrecoverableError } from 'bullmq';
import { InvalidJobError } from '../core/errors.js';
import type { RunOptions, ShardRef } from '../core/types.js';
import { parseLocation } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { readRunRecord, runRecordUri } from '../output/run-record.js';
import type { QueueContext } from './context.js';
import { checkRunInLimits, type ResolvedLimits } from './limits.js';
import { queueName, type Stage, shardJobId } from './names.js';
import { checkCarried, checkRunRecord, checkShardInRun, parseProduceJob, parseShardJob } from './payloads.js';
import { type ProduceResult, produceRun, type ShardJobData } from './produce.js';
import { ShardJobReporter, shardPairs } from './progress.js';
import type { RunRecord } from './runs.js';
import { type Carried, carry, discard, spillUri, unwrap } from './spill.js';
import {
  type CaptionStageResult,
  captionStage,
  filterStage,
  fusedStage,
  type ModelStageResult,
  type StageEngines,
  writeStage,
} from './stages.js';
import { writeRunSummary } from './summary.js';

/** The run's options as produce recorded them, checked against the run schema, cached per process. */
export class RunCache {
  readonly #runs = new Map<string, RunRecord<RunOptions>>();
  readonly #outputsSeen = new Set<string>();
  /** Whether this process already found the run's output (its run record) from here. */
  outputSeen(runId: string): boolean {
    return this.#outputsSeen.has(runId);
  }
  markOutputSeen(runId: string): void {
    if (this.#outputsSeen.size > 64) this.#outputsSeen.clear();
    this.#outputsSeen.add(runId);
  }
  constructor(
    private readonly ctx: QueueContext,
    private readonly limits: ResolvedLimits = { read: null, write: null, privateNetwork: false },
  ) {}
  async get(runId: string): Promise<RunRecord<RunOptions>> {
    const hit = this.#runs.get(runId);
    if (hit) return hit;
    const stored = await this.ctx.runs.get<unknown>(runId).catch((err: unknown) => {
      // A hash whose JSON fields do not parse was not written by produce.
      if (err instanceof SyntaxError)
        throw new InvalidJobError(`invalid run record ${runId}: ${err.message}`);
      throw err;
    });
    // Without its run record a job cannot know its options: retrying will not help.
    if (!stored) throw new UnrecoverableError(`run ${runId} is not recorded in Redis`);
    const run = checkRunRecord(stored);
    const privateNetwork = run.options.limits.allowPrivateNetwork;
    await checkRunInLimits({ ...run, sources: run.options.sources, privateNetwork }, this.limits);
    if (this.#runs.size > 64) this.#runs.delete(this.#runs.keys().next().value as string);
    this.#runs.set(runId, run);
    return run;
  }
}

/** What every processor of one worker process shares. */
export interface ProcessorContext {
  ctx: QueueContext;
  storage: Storage;
  engines: StageEngines;
  runs: RunCache;
  /** Where this worker's runs may read and write (the run cache holds each run to them too). */
  limits: ResolvedLimits;
  log: (line: string) => void;
  /** One line per finished shard job (see WorkerPoolOptions.report). */
  report: (line: string) => void;
}

/** A filter job's value: its records, and the captions' spill file for the writer to remove. */
export type FilterJobValue = Carried<ModelStageResult> & { captionSpill?: string };

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

/** The value a shard job's child returned; children have deterministic ids, so the key is exact. */
/**
 * The result a shard job's child returned (children have deterministic ids, so the key is exact);
 * a spilled one must name the file that child's own stage writes.
 */
async function childValue<T>(
  pc: ProcessorContext,
  job: Job,
  { data, run }: { data: ShardJobData; run: RunRecord<RunOptions> },
  stage: Stage,
): Promise<Carried<T>> {
  const key = pc.ctx.queue(stage).toKey(shardJobId(data.runId, data.shard.id, stage));
  const values = await job.getChildrenValues<unknown>();
  if (!(key in values)) throw new Error(`missing result of the ${stage} stage (${queueName(stage)} job)`);
  return checkCarried<T>(
    values[key],
    spillUri(run.output, run.runId, stage, data.shard.id),
    `${job.name} job`,
  );
}

/**
 * A worker on another machine than the producer sees its own filesystem: a local input or output
 * path that is not shared at the same place is not there. Said at once, for good (retries cannot
 * help): the input by its path, the output by its run record, which produce wrote before enqueueing.
 */
async function assertVisible(pc: ProcessorContext, run: RunRecord, shard: ShardRef): Promise<void> {
  const here = `this worker (${hostname()})`;
  const remedy = 'workers need it at the same path (a shared filesystem), or use s3://';
  if (parseLocation(shard.uri).kind === 'local' && (await pc.storage.kind(shard.uri)) === null) {
    throw new UnrecoverableError(`input ${shard.uri} is not visible from ${here}: ${remedy}`);
  }
  if (pc.runs.outputSeen(run.runId)) return;
  if (!(await readRunRecord(pc.storage, run.output))) {
    throw new UnrecoverableError(
      `output ${run.output} is not visible from ${here} (no ${runRecordUri(run.output)} there): ${remedy}`,
    );
  }
  pc.runs.markOutputSeen(run.runId);
}

/** A shard job's data and run, both checked: nothing a forged job names is read or written. */
async function shardJob(pc: ProcessorContext, job: Job) {
  const what = `${job.name} job ${job.id ?? ''}`.trim();
  const data = parseShardJob(job.data, what);
  const run = await pc.runs.get(data.runId);
  checkShardInRun(data, run, what);
  await assertVisible(pc, run, data.shard);
  return { data, run };
}

/** Progress of a shard job, reported per batch; `pairsTotal` when known better than the shard says. */
function reporter(pc: ProcessorContext, job: Job, stage: Stage, data: ShardJobData, pairsTotal?: number) {
  return new ShardJobReporter(job, pc, {
    runId: data.runId,
    stage,
    shard: data.shard.id,
    pairsTotal: pairsTotal ?? shardPairs(data.shard),
  });
}

function carryResult<T>(pc: ProcessorContext, stage: Stage, data: ShardJobData, run: RunRecord, value: T) {
  return carry(pc.storage, spillUri(run.output, run.runId, stage, data.shard.id), value);
}

/** A scheduled firing: a new run (or none, when the schedule's previous run is still going). */
export async function produceJob(pc: ProcessorContext, job: Job): Promise<ProduceResult> {
  const data = parseProduceJob(job.data);
  const runId = `${data.runPrefix ?? data.scheduleId ?? 'run'}-${firingStamp(job)}`;
  // Its sources are checked when its shard jobs fetch the run it records.
  const privateNetwork = data.options.limits.allowPrivateNetwork;
  await checkRunInLimits({ ...data, runId, privateNetwork }, pc.limits, 'produce job for run');
  const result = await produceRun(pc.ctx, pc.storage, { ...data, runId });
  pc.log(
    result.busy
      ? `capfilt: ${runId} skipped: run ${result.runId} of the same schedule is still going`
      : `capfilt: produced ${result.runId}: ${result.enqueued} shards enqueued, ${result.skipped} skipped`,
  );
  return result;
}

export async function captionJob(pc: ProcessorContext, job: Job): Promise<Carried<CaptionStageResult>> {
  const { data, run } = await shardJob(pc, job);
  const progress = reporter(pc, job, 'caption', data);
  const result = await captionStage(
    pc.storage,
    data.shard,
    run,
    pc.engines,
    progress.onBatch,
    data.fingerprint,
  );
  await progress.finish();
  return carryResult(pc, 'caption', data, run, result);
}

export async function filterJob(pc: ProcessorContext, job: Job): Promise<FilterJobValue> {
  const { data, run } = await shardJob(pc, job);
  const captioned = await childValue<CaptionStageResult>(pc, job, { data, run }, 'caption');
  const prior = await unwrap(pc.storage, captioned);
  const progress = reporter(pc, job, 'filter', data, prior.pairs.length);
  const result = await filterStage(
    pc.storage,
    data.shard,
    run,
    prior,
    pc.engines,
    progress.onBatch,
    data.fingerprint,
  );
  await progress.finish();
  const own = await carryResult(pc, 'filter', data, run, result);
  return 'spilled' in captioned ? { ...own, captionSpill: captioned.spilled } : own;
}

export async function fusedJob(pc: ProcessorContext, job: Job): Promise<Carried<ModelStageResult>> {
  const { data, run } = await shardJob(pc, job);
  const progress = reporter(pc, job, 'fused', data);
  const result = await fusedStage(
    pc.storage,
    data.shard,
    run,
    pc.engines,
    progress.onBatch,
    data.fingerprint,
  );
  await progress.finish();
  return carryResult(pc, 'fused', data, run, result);
}

/** Writes the shard's output, then counts it in its run; spill files go only after that. */
async function writeShard(pc: ProcessorContext, job: Job, data: ShardJobData, run: RunRecord<RunOptions>) {
  const value = (await childValue<ModelStageResult>(
    pc,
    job,
    { data, run },
    run.mode === 'fused' ? 'fused' : 'filter',
  )) as FilterJobValue;
  const captionSpill = spillUri(run.output, run.runId, 'caption', data.shard.id);
  if (value.captionSpill !== undefined && value.captionSpill !== captionSpill) {
    throw new InvalidJobError(`invalid write job: the captions' spill file must be ${captionSpill}`);
  }
  const { stats, summary } = await writeStage(
    pc.storage,
    run,
    data.shard,
    await unwrap(pc.storage, value),
    data.fingerprint,
  );
  // The shard's line: its rate from the first job's start to this write.
  const progress = reporter(pc, job, 'write', data, stats.records);
  progress.onBatch({ pairs: stats.records, kept: stats.kept.records });
  await progress.finish(stats.samplesPerSecond);
  // Counted once per shard even if this job is delivered twice.
  const marked = await pc.ctx.runs.markShardDone(data.runId, data.shard.id, summary);
  const spills: Carried<unknown>[] = [value];
  if (value.captionSpill) spills.push({ spilled: value.captionSpill, bytes: 0 });
  await discard(pc.storage, spills);
  return {
    marked,
    written: { records: stats.records, status: stats.status, kept: stats.kept, wallMs: stats.wallMs },
  };
}

export async function writeJob(pc: ProcessorContext, job: Job): Promise<unknown> {
  const { data, run } = await shardJob(pc, job);
  // A shard already counted was written by an earlier delivery of this job, whose worker died
  // before the job completed; its spill files may be gone, so only the summary can be missing.
  const { marked, written } = (await pc.ctx.runs.isShardDone(data.runId, data.shard.id))
    ? { marked: 'duplicate' as const, written: { alreadyWritten: true } }
    : await writeShard(pc, job, data, run);
  if (marked === 'completed' || (marked === 'duplicate' && (await pc.ctx.runs.summaryPending(data.runId)))) {
    const uri = await writeRunSummary(pc.storage, run);
    await pc.ctx.runs.markCompleted(data.runId);
    pc.log(`capfilt: run ${run.runId} complete: ${uri}`);
  }
  return written;
}

export const PROCESSORS: Record<Stage, (pc: ProcessorContext, job: Job) => Promise<unknown>> = {
  produce: produceJob,
  caption: captionJob,
  filter: filterJob,
  fused: fusedJob,
  write: writeJob,
};
