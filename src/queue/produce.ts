import { randomBytes } from 'node:crypto';
import type { FlowJob } from 'bullmq';
import pMap from 'p-map';
import { NotFoundError } from '../core/errors.js';
import type { RunOptions, ShardRef } from '../core/types.js';
import { validateId, validateRunOptions } from '../core/validate.js';
import { sourcePolicyFor } from '../io/sources.js';
import type { Storage } from '../io/storage/storage.js';
import { isShardComplete } from '../output/completion.js';
import { planRun } from '../pipeline/plan.js';
import type { QueueContext } from './context.js';
import { shardFingerprint } from './fingerprint.js';
import { DEFAULT_SHARD_JOB_POLICY, type ShardJobPolicy, shardJobOptions } from './job-options.js';
import { queueName, shardJobId } from './names.js';
import type { RunMode } from './runs.js';

/** What a shard job carries: a reference to the shard, never its bytes. */
export interface ShardJobData {
  runId: string;
  shard: ShardRef;
  /** Fingerprint of the shard's input when enqueued (recorded when its output is written). */
  fingerprint: string;
}

export interface ProduceRequest {
  input: string;
  output: string;
  options: RunOptions;
  mode: RunMode;
  /** Default: a fresh id from the clock. Re-producing with the same id enqueues nothing new. */
  runId?: string;
  scheduleId?: string;
  /** Human-annotated pairs (manifests or folders): added to the output unfiltered, marked human. */
  human?: string[];
  /** Redo shards even when their output is complete and their input unchanged. */
  overwrite?: boolean;
  policy?: ShardJobPolicy;
}

/** Data of a `produce` job (scheduled re-runs). */
export interface ProduceJobData extends Omit<ProduceRequest, 'runId' | 'policy'> {
  /** Run id prefix; each firing appends its time. */
  runPrefix?: string;
}

export interface ProduceResult {
  runId: string;
  /** Shards of the input. */
  shards: number;
  /** Shards enqueued (new, changed or incomplete). */
  enqueued: number;
  /** Complete in the output and unchanged since they were written. */
  skipped: number;
  /** Set when a scheduled firing was skipped because the schedule's previous run is unfinished. */
  busy?: true;
}

async function unfinishedRunOf(ctx: QueueContext, scheduleId: string): Promise<string | null> {
  const runs = await ctx.runs.recent(20);
  return runs.find((r) => r.scheduleId === scheduleId && r.completedAt === null)?.runId ?? null;
}

export function newRunId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `run-${stamp}-${randomBytes(3).toString('hex')}`;
}

/** One flow per shard: write ← filter ← caption (split) or write ← fused. */
export function shardFlow(
  prefix: string,
  data: ShardJobData,
  mode: RunMode,
  policy: ShardJobPolicy,
): FlowJob {
  const opts = shardJobOptions(policy);
  // A child that fails for good fails the write job too, so the shard shows as failed.
  const child = (stage: 'caption' | 'filter' | 'fused', children?: FlowJob[]): FlowJob => ({
    name: stage,
    queueName: queueName(stage),
    prefix,
    data,
    opts: { ...opts, jobId: shardJobId(data.runId, data.shard.id, stage), failParentOnFailure: true },
    ...(children ? { children } : {}),
  });
  const model = mode === 'fused' ? child('fused') : child('filter', [child('caption')]);
  return {
    name: 'write',
    queueName: queueName('write'),
    prefix,
    data,
    opts: { ...opts, jobId: shardJobId(data.runId, data.shard.id, 'write') },
    children: [model],
  };
}

/**
 * Plans the input's shards, skips those whose completion marker is in the output and whose input
 * is unchanged since it was written, records the run (with its options), and enqueues one flow
 * per remaining shard.
 */
export async function produceRun(
  ctx: QueueContext,
  storage: Storage,
  req: ProduceRequest,
): Promise<ProduceResult> {
  validateRunOptions(req.options);
  const runId = req.runId ?? newRunId();
  validateId(runId, 'run id');
  const existing = await ctx.runs.get<RunOptions>(runId);
  if (!existing && req.scheduleId) {
    // A firing while the schedule's previous run is still going would enqueue that run's
    // unfinished shards a second time: skip it, the next firing picks up whatever is new.
    const busy = await unfinishedRunOf(ctx, req.scheduleId);
    if (busy) return { runId: busy, shards: 0, enqueued: 0, skipped: 0, busy: true };
  }
  // Producing a run again (a crashed producer, a retried produce job) re-adds only what is
  // missing: job ids are derived from run + shard, so BullMQ ignores flows it already holds.
  // Decided once, recorded with the run: the inputs' own folders or buckets, plus what the options add.
  const options = existing?.options ?? {
    ...req.options,
    sources: await sourcePolicyFor(storage, [req.input, ...(req.human ?? [])], req.options.sources),
  };
  const planned = await planRun(storage, {
    input: req.input,
    output: req.output,
    human: existing?.human ?? req.human,
    shardSize: options.input.shardSize,
    columns: options.input,
  });
  const previous = await ctx.runs.fingerprints(req.output);
  const decisions = await pMap(
    planned,
    async ({ shard }) => {
      // A shard whose input vanished since planning is still enqueued: its job then fails
      // permanently and is listed among the run's failures.
      const fingerprint = await shardFingerprint(storage, shard).catch((err: unknown) => {
        if (err instanceof NotFoundError) return 'missing';
        throw err;
      });
      if (req.overwrite) return { shard, fingerprint, skip: false };
      const before = previous.get(shard.id);
      // Output written by `capfilt run` has no recorded fingerprint: its completion alone means done.
      const unchanged = before === undefined || before === fingerprint;
      const skip =
        unchanged && (await isShardComplete(storage, req.output, shard.id, options.output.compression));
      return { shard, fingerprint, skip };
    },
    { concurrency: 16 },
  );
  let todo = decisions.filter((d) => !d.skip);
  if (existing) {
    const done = await Promise.all(todo.map((d) => ctx.runs.isShardDone(runId, d.shard.id)));
    todo = todo.filter((_, i) => !done[i]);
  } else if (todo.length === 0 && req.scheduleId) {
    // A scheduled firing with nothing new leaves no trace: a frequent schedule must not fill
    // Redis with empty runs.
    return { runId, shards: decisions.length, enqueued: 0, skipped: decisions.length };
  } else
    await ctx.runs.create({
      runId,
      input: req.input,
      output: req.output,
      mode: req.mode,
      options,
      ...(req.human?.length ? { human: req.human } : {}),
      createdAt: Date.now(),
      shardsTotal: todo.length,
      shardsSkipped: decisions.length - todo.length,
      ...(req.scheduleId ? { scheduleId: req.scheduleId } : {}),
    });
  const policy = req.policy ?? DEFAULT_SHARD_JOB_POLICY;
  const flows = todo.map((d) =>
    shardFlow(
      ctx.prefix,
      { runId, shard: d.shard, fingerprint: d.fingerprint },
      existing?.mode ?? req.mode,
      policy,
    ),
  );
  for (let i = 0; i < flows.length; i += 500) await ctx.flows().addBulk(flows.slice(i, i + 500));
  return { runId, shards: decisions.length, enqueued: todo.length, skipped: decisions.length - todo.length };
}
