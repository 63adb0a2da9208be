import { randomBytes } from 'node:crypto';
import type { FlowJob } from 'bullmq';
import type { RunOptions, ShardRef } from '../core/types.js';
import { validateId, validateRunOptions } from '../core/validate.js';
import { absoluteLocation } from '../io/location.js';
import { sourcePolicyFor } from '../io/sources.js';
import type { Storage } from '../io/storage/storage.js';
import { type PreparedOutput, prepareOutput } from '../output/prepare.js';
import type { RecordedShard } from '../output/run-record.js';
import { fingerprintShards } from '../pipeline/fingerprint.js';
import { planRun, totalPairs } from '../pipeline/plan.js';
import type { QueueContext } from './context.js';
import { DEFAULT_SHARD_JOB_POLICY, type ShardJobPolicy, shardJobOptions } from './job-options.js';
import { queueName, shardJobId } from './names.js';
import type { RunMode, RunRecord } from './runs.js';

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
  /** Shards enqueued now (new, changed or incomplete). */
  enqueued: number;
  /** Complete in the output and unchanged since they were written. */
  skipped: number;
  /** Producing an existing run: its shards still queued or running (not enqueued again). */
  queued?: number;
  /** Producing an existing run: its failed shards (not enqueued again: `capfilt retry` is for them). */
  failed?: number;
  /** The run existed before this call. */
  existing?: true;
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

/** Where a request reads and writes, absolute: every worker must resolve them to the same place. */
function locationsOf(req: ProduceRequest, existing: RunRecord<RunOptions> | null) {
  return {
    input: absoluteLocation(req.input),
    output: absoluteLocation(req.output),
    human: (existing?.human ?? req.human ?? []).map(absoluteLocation),
  };
}

/** The plan checked against the output's recorded run (output/prepare.ts), and what is left to do. */
async function prepare(
  storage: Storage,
  req: ProduceRequest,
  runId: string,
  options: RunOptions,
  where: ReturnType<typeof locationsOf>,
): Promise<PreparedOutput> {
  const planned = await planRun(storage, {
    ...where,
    shardSize: options.input.shardSize,
    columns: options.input,
  });
  const prints = await fingerprintShards(
    storage,
    planned.map((s) => s.shard),
  );
  return await prepareOutput(
    storage,
    where.output,
    {
      ...where,
      options,
      models: null,
      runId,
      shards: planned.map((s) => ({ ...s, fingerprint: prints.get(s.shard.id) as string })),
    },
    { overwrite: req.overwrite },
  );
}

/**
 * Plans the input's shards, checks them against the run the output holds (another run is
 * refused), skips complete shards whose input is unchanged, records the run (with its options),
 * and enqueues one flow per remaining shard.
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
  if (existing) return await produceAgain(ctx, storage, req, existing);
  if (req.scheduleId) {
    // A firing while the schedule's previous run is still going would enqueue that run's
    // unfinished shards a second time: skip it, the next firing picks up whatever is new.
    const busy = await unfinishedRunOf(ctx, req.scheduleId);
    if (busy) return { runId: busy, shards: 0, enqueued: 0, skipped: 0, busy: true };
  }
  const where = locationsOf(req, null);
  // Decided once, recorded with the run: the inputs' own folders or buckets, plus what the options add.
  const options: RunOptions = {
    ...req.options,
    sources: await sourcePolicyFor(storage, [where.input, ...where.human], req.options.sources),
  };
  const { record, todo } = await prepare(storage, req, runId, options, where);
  const shards = record.shards.length;
  // A scheduled firing with nothing new leaves no trace: a frequent schedule must not fill Redis
  // with empty runs.
  if (todo.length === 0 && req.scheduleId) return { runId, shards, enqueued: 0, skipped: shards };
  await ctx.runs.create({
    runId,
    ...where,
    mode: req.mode,
    options,
    ...(where.human.length ? { human: where.human } : {}),
    createdAt: Date.now(),
    shardsTotal: todo.length,
    shardsSkipped: shards - todo.length,
    pairsTotal: totalPairs(todo),
    ...(req.scheduleId ? { scheduleId: req.scheduleId } : {}),
  });
  await enqueueShards(ctx, runId, req.mode, todo, req.policy);
  return { runId, shards, enqueued: todo.length, skipped: shards - todo.length };
}

/** One flow per shard, in bulk; job ids derive from run + shard, so a flow already held is not added twice. */
export async function enqueueShards(
  ctx: QueueContext,
  runId: string,
  mode: RunMode,
  todo: readonly RecordedShard[],
  policy: ShardJobPolicy = DEFAULT_SHARD_JOB_POLICY,
): Promise<void> {
  const flows = todo.map((s) =>
    shardFlow(ctx.prefix, { runId, shard: s.shard, fingerprint: s.fingerprint }, mode, policy),
  );
  for (let i = 0; i < flows.length; i += 500) await ctx.flows().addBulk(flows.slice(i, i + 500));
}

/**
 * Producing a run that exists (a crashed producer, a retried produce job, an operator running the
 * same command again): only shards the run never enqueued are added; the result says what became
 * of the others (done, queued or running, failed: `capfilt retry` re-runs failed ones).
 */
async function produceAgain(
  ctx: QueueContext,
  storage: Storage,
  req: ProduceRequest,
  run: RunRecord<RunOptions>,
): Promise<ProduceResult> {
  const where = { input: run.input, output: run.output, human: run.human ?? [] };
  const { record, todo } = await prepare(
    storage,
    { ...req, overwrite: false },
    run.runId,
    run.options,
    where,
  );
  const progress = await ctx.runs.progress(run.runId);
  const failed = new Set(progress?.failures.map((f) => f.shardId));
  const states = await Promise.all(
    todo.map(async (s) => {
      if (await ctx.runs.isShardDone(run.runId, s.shard.id)) return 'done';
      if (failed.has(s.shard.id)) return 'failed';
      const job = await ctx.queue('write').getJob(shardJobId(run.runId, s.shard.id, 'write'));
      return job ? 'queued' : 'missing';
    }),
  );
  const missing = todo.filter((_, i) => states[i] === 'missing');
  await enqueueShards(ctx, run.runId, run.mode, missing, req.policy);
  const count = (state: string) => states.filter((x) => x === state).length;
  const shards = record.shards.length;
  return {
    runId: run.runId,
    shards,
    enqueued: missing.length,
    skipped: shards - todo.length + count('done'),
    queued: count('queued'),
    failed: count('failed'),
    existing: true,
  };
}
