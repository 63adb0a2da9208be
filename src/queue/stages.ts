/**
 * The pipeline's stage functions (src/pipeline), cut at the points where a BullMQ job ends: the
 * caption, filter, fused and write jobs compose exactly the functions the local runner calls, in
 * the same batches, so a distributed run writes the records `capfilt run` writes.
 */
import { Captioner, type EngineOptions } from '../captioner/captioner.js';
import { ShardError, UsageError } from '../core/errors.js';
import type {
  Caption,
  CaptionedSample,
  LoadedSample,
  OutputRecord,
  Rejection,
  RunOptions,
  ShardRef,
  ShardStats,
  StageTimings,
} from '../core/types.js';
import { Filter } from '../filter/filter.js';
import type { Storage } from '../io/storage/storage.js';
import { checkpointKey, ShardCheckpoint } from '../output/checkpoint.js';
import { emptyTimings } from '../output/stats.js';
import {
  checkpointedBatches,
  type ShardContext,
  shardFailure,
  shardRecords,
  writeShardOutput,
} from '../pipeline/shard.js';
import { buildRecords, captionSamples, filterSamples } from '../pipeline/stages.js';
import type { Stage } from './names.js';
import { keptPairs, type OnBatch } from './progress.js';
import type { RunRecord, ShardSummary } from './runs.js';

/** Batches decoded ahead of the models (the local runner's default). */
const PREFETCH = 2;

/** What a worker process loads, once: the model directories and how to run them. */
export interface EngineSpec extends EngineOptions {
  captionerDir?: string;
  filterDir?: string;
}

export interface StageEngines {
  captioner: Captioner | null;
  filter: Filter | null;
  batchSize?: number;
  close(): Promise<void>;
}

export async function loadEngines(stages: readonly Stage[], spec: EngineSpec): Promise<StageEngines> {
  const needCaptioner = stages.includes('caption') || stages.includes('fused');
  const needFilter = stages.includes('filter') || stages.includes('fused');
  if (needCaptioner && !spec.captionerDir)
    throw new UsageError('the caption and fused stages need --captioner');
  if (needFilter && !spec.filterDir) throw new UsageError('the filter and fused stages need --filter');
  const { captionerDir, filterDir, ...opts } = spec;
  const captioner = needCaptioner ? await Captioner.load(captionerDir as string, opts) : null;
  const filter = needFilter ? await Filter.load(filterDir as string, opts) : null;
  return {
    captioner,
    filter,
    ...(spec.batchSize ? { batchSize: spec.batchSize } : {}),
    async close() {
      await captioner?.close();
      await filter?.close();
    },
  };
}

/** Per pair of a shard, in order: its captions, or why it left the model path. */
export interface CaptionStageResult {
  captionerModelId: string;
  pairs: ({ captions: Caption[] } | { rejection: Rejection })[];
  timings: StageTimings;
  startedAt: string;
}

/** The records of a shard, ready to write, with the time spent on them. */
export interface ModelStageResult {
  records: OutputRecord[];
  timings: StageTimings;
  startedAt: string;
}

function optionsFor(run: RunRecord<RunOptions>, engines: StageEngines): RunOptions {
  return engines.batchSize ? { ...run.options, batchSize: engines.batchSize } : run.options;
}

/** What a shard job's stage functions work with: the run's options and output, this worker's models. */
function shardContext(
  storage: Storage,
  run: RunRecord<RunOptions>,
  engines: StageEngines,
  models: Pick<ShardContext, 'captioner' | 'filter'>,
  fingerprint: string | undefined,
): ShardContext {
  return {
    storage,
    options: optionsFor(run, engines),
    ...models,
    output: run.output,
    prefetch: PREFETCH,
    ...(fingerprint ? { fingerprint } : {}),
  };
}

/** What a split-mode job's pieces are keyed by: the shard's input, the run's options, its models. */
function splitCheckpoint<T>(
  ctx: ShardContext,
  shard: ShardRef,
  stage: 'caption' | 'filter',
  models: { captioner: string | null; filter: string | null },
) {
  const key = checkpointKey(ctx.fingerprint, ctx.options, models);
  return ShardCheckpoint.for<T>(ctx.storage, ctx.output, shard.id, key, stage);
}

/**
 * Split mode, first job: decode for the captioner and caption every pair of the shard, each
 * finished batch checkpointed (a redelivered job resumes after the last).
 */
export async function captionStage(
  storage: Storage,
  shard: ShardRef,
  run: RunRecord<RunOptions>,
  engines: StageEngines,
  onBatch?: OnBatch,
  fingerprint?: string,
): Promise<CaptionStageResult> {
  const captioner = engines.captioner;
  if (!captioner) throw new UsageError('this worker has no captioner');
  const startedAt = new Date().toISOString();
  const timings = emptyTimings();
  const ctx = shardContext(storage, run, engines, { captioner, filter: null }, fingerprint);
  const pairs: CaptionStageResult['pairs'] = [];
  const checkpoint = splitCheckpoint<CaptionStageResult['pairs'][number]>(ctx, shard, 'caption', {
    captioner: captioner.modelId,
    filter: null,
  });
  try {
    const batches = checkpointedBatches(shard, ctx, timings, checkpoint, async (loaded) => {
      const t0 = performance.now();
      const captioned = await captionSamples(loaded, ctx);
      timings.caption += performance.now() - t0;
      return captioned.map((s) => (s.rejection ? { rejection: s.rejection } : { captions: s.captions }));
    });
    for await (const batch of batches) {
      pairs.push(...batch);
      onBatch?.({ pairs: batch.length, kept: null });
    }
  } catch (err) {
    throw shardFailure(shard, err);
  }
  return { captionerModelId: captioner.modelId, pairs, timings, startedAt };
}

/** A pair's decoded sample with the captions its caption job gave it. */
function withCaption(
  shard: ShardRef,
  s: LoadedSample,
  prior: CaptionStageResult['pairs'][number] | undefined,
) {
  if (!prior) throw new Error(`shard ${shard.id} has more pairs than its caption job saw`);
  // A pair the caption job could not load stays rejected for the same reason.
  if ('rejection' in prior) return { ...s, rejection: s.rejection ?? prior.rejection, captions: [] };
  return { ...s, captions: prior.captions };
}

/**
 * Split mode, second job: decode for the filter, score web text and the captions, decide; each
 * finished batch checkpointed.
 */
export async function filterStage(
  storage: Storage,
  shard: ShardRef,
  run: RunRecord<RunOptions>,
  captioned: CaptionStageResult,
  engines: StageEngines,
  onBatch?: OnBatch,
  fingerprint?: string,
): Promise<ModelStageResult> {
  const filter = engines.filter;
  if (!filter) throw new UsageError('this worker has no filter');
  const timings = { ...captioned.timings };
  const ctx = shardContext(storage, run, engines, { captioner: null, filter }, fingerprint);
  const models = { captioner: captioned.captionerModelId, filter: filter.modelId };
  const records: OutputRecord[] = [];
  try {
    const checkpoint = splitCheckpoint<OutputRecord>(ctx, shard, 'filter', models);
    const batches = checkpointedBatches(shard, ctx, timings, checkpoint, async (loaded, first) => {
      const withCaptions: CaptionedSample[] = loaded.map((s, i) =>
        withCaption(shard, s, captioned.pairs[first + i]),
      );
      const t0 = performance.now();
      const scored = await filterSamples(withCaptions, ctx);
      timings.filter += performance.now() - t0;
      return buildRecords(scored, ctx.options, models);
    });
    for await (const built of batches) {
      records.push(...built);
      onBatch?.({ pairs: built.length, kept: keptPairs(built) });
    }
  } catch (err) {
    throw shardFailure(shard, err);
  }
  if (records.length !== captioned.pairs.length) {
    throw new ShardError(shard.id, 'the shard changed between its caption and filter jobs');
  }
  return { records, timings, startedAt: captioned.startedAt };
}

/**
 * Fused mode: one job decodes each image once and runs both models, as the local runner does,
 * checkpointing each finished batch: a redelivered job (its worker died) resumes after the last.
 */
export async function fusedStage(
  storage: Storage,
  shard: ShardRef,
  run: RunRecord<RunOptions>,
  engines: StageEngines,
  onBatch?: OnBatch,
  fingerprint?: string,
): Promise<ModelStageResult> {
  if (!engines.captioner || !engines.filter) throw new UsageError('the fused stage needs both models');
  const startedAt = new Date().toISOString();
  const timings = emptyTimings();
  const ctx = shardContext(
    storage,
    run,
    engines,
    { captioner: engines.captioner, filter: engines.filter },
    fingerprint,
  );
  const records: OutputRecord[] = [];
  try {
    for await (const batch of shardRecords(shard, ctx, timings)) {
      records.push(...batch);
      onBatch?.({ pairs: batch.length, kept: keptPairs(batch) });
    }
  } catch (err) {
    throw shardFailure(shard, err);
  }
  return { records, timings, startedAt };
}

/** Writer job: the data file atomically, then the stats marker (idempotent: same names, same bytes). */
export async function writeStage(
  storage: Storage,
  run: RunRecord<RunOptions>,
  shard: ShardRef,
  result: ModelStageResult,
  fingerprint: string,
): Promise<{ stats: ShardStats; summary: ShardSummary }> {
  const timings = { ...result.timings };
  const stats = await writeShardOutput(
    shard,
    [result.records],
    { storage, options: run.options, output: run.output, fingerprint },
    timings,
    new Date(result.startedAt),
  );
  return {
    stats,
    summary: {
      samples: stats.records,
      ok: stats.status.ok,
      rejected: stats.status.rejected,
      webKept: stats.kept.web,
      syntheticKept: stats.kept.synthetic,
      // Every scored synthetic caption lands in one histogram bin.
      syntheticTotal: stats.itmHistogram.synthetic.reduce((a, b) => a + b, 0),
    },
  };
}
