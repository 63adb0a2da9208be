/**
 * `capfilt retry <run>`: the failed shards of a distributed run, run again with the options the
 * run was produced with. Their old jobs (the failed flow) are removed, the failures cleared in
 * the run's counters, and one new flow per shard enqueued under the same job ids; when the last
 * of them lands, the run completes and writes its summary as a clean run does.
 */
import { NotFoundError, UsageError } from '../core/errors.js';
import type { RunOptions } from '../core/types.js';
import type { Storage } from '../io/storage/storage.js';
import { type RecordedShard, readRunRecord, runRecordUri } from '../output/run-record.js';
import { fingerprintShards } from '../pipeline/fingerprint.js';
import type { QueueContext } from './context.js';
import type { ShardJobPolicy } from './job-options.js';
import { type Stage, shardJobId } from './names.js';
import { enqueueShards } from './produce.js';
import type { RunRecord } from './runs.js';

export interface RetryResult {
  runId: string;
  /** Shards enqueued again, each with the failure it had. */
  retried: { shardId: string; error: string }[];
  /** Failed shards whose old jobs are still held by a worker: left alone (retry again later). */
  busy: string[];
  /** Shards the run finished. */
  done: number;
  /** Shards the run enqueued. */
  total: number;
}

/** The jobs of one shard's flow, parent first. */
function flowStages(run: RunRecord): Stage[] {
  return run.mode === 'fused' ? ['write', 'fused'] : ['write', 'filter', 'caption'];
}

/**
 * Removes the shard's old flow. A job a worker still holds (active) cannot be removed: the
 * shard is then reported busy and left as it is.
 */
async function removeFlow(ctx: QueueContext, run: RunRecord, shardId: string): Promise<boolean> {
  for (const stage of flowStages(run)) {
    const job = await ctx.queue(stage).getJob(shardJobId(run.runId, shardId, stage));
    if (!job) continue;
    if ((await job.getState()) === 'active') return false;
    await job.remove({ removeChildren: true });
  }
  return true;
}

/** The failed shards as the output's run record plans them (with their input's fingerprint now). */
async function failedShards(
  storage: Storage,
  run: RunRecord,
  failed: readonly string[],
): Promise<RecordedShard[]> {
  const record = await readRunRecord(storage, run.output);
  if (!record) {
    throw new UsageError(
      `run ${run.runId}: its output has no run record (${runRecordUri(run.output)}); produce it again instead`,
    );
  }
  const planned = new Map(record.shards.map((s) => [s.shard.id, s]));
  const shards = failed.map((id) => {
    const s = planned.get(id);
    if (!s) throw new UsageError(`run ${run.runId}: shard ${id} is not in ${runRecordUri(run.output)}`);
    return s;
  });
  // A fixed input (a file put back, replaced) is written with the fingerprint it has now.
  const prints = await fingerprintShards(
    storage,
    shards.map((s) => s.shard),
  );
  return shards.map((s) => ({ ...s, fingerprint: prints.get(s.shard.id) ?? s.fingerprint }));
}

export async function retryRun(
  ctx: QueueContext,
  storage: Storage,
  runId: string,
  policy?: ShardJobPolicy,
): Promise<RetryResult> {
  const progress = await ctx.runs.progress(runId);
  if (!progress) throw new NotFoundError(`run ${runId} (prefix ${ctx.prefix})`);
  const run = (await ctx.runs.get<RunOptions>(runId)) as RunRecord<RunOptions>;
  const result: RetryResult = {
    runId,
    retried: [],
    busy: [],
    done: progress.shardsDone,
    total: progress.shardsTotal,
  };
  if (progress.failures.length === 0) return result;
  const shards = await failedShards(
    storage,
    run,
    progress.failures.map((f) => f.shardId),
  );
  const todo: RecordedShard[] = [];
  for (const [i, s] of shards.entries()) {
    if (await removeFlow(ctx, run, s.shard.id)) {
      todo.push(s);
      result.retried.push(progress.failures[i]);
    } else result.busy.push(s.shard.id);
  }
  // Cleared before the new flows exist, so a fast worker's completion counts against a run that
  // no longer lists the shard as failed.
  await ctx.runs.reopenShards(
    runId,
    todo.map((s) => s.shard.id),
  );
  await enqueueShards(ctx, runId, run.mode, todo, policy);
  return result;
}

/** What retry did, in words. */
export function describeRetried(r: RetryResult): string {
  if (r.retried.length === 0 && r.busy.length === 0) {
    return `run ${r.runId} has no failed shards (${r.done} of ${r.total} done): nothing to retry`;
  }
  const busy = r.busy.length
    ? `; ${r.busy.length} failed shards still held by a worker, not retried (${r.busy.join(', ')})`
    : '';
  return `run ${r.runId}: ${r.retried.length} failed shards enqueued again with the run's options${busy}`;
}
