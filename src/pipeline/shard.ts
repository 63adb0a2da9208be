import { errorMessage, isPermanent, ShardError } from '../core/errors.js';
import { recordOptions } from '../core/options.js';
import type {
  LoadedSample,
  OutputRecord,
  PairRef,
  ShardRef,
  ShardStats,
  StageTimings,
} from '../core/types.js';
import { checkpointKey, clearCheckpoint, ShardCheckpoint } from '../output/checkpoint.js';
import { carriesImages } from '../output/dataset-writer.js';
import { ShardWriter } from '../output/shard-writer.js';
import { emptyTimings } from '../output/stats.js';
import { ShardImages } from './images.js';
import {
  buildRecords,
  captionSamples,
  filterSamples,
  loadSamples,
  modelIds,
  readShardPairs,
  type StageContext,
} from './stages.js';

export interface ShardContext extends StageContext {
  /** Output folder or prefix. */
  output: string;
  /** Batches fetched and decoded ahead of the models (bounded: memory stays flat). */
  prefetch?: number;
  signal?: AbortSignal;
  /** Called after each batch is written, with the number of pairs it held. */
  onProgress?: (pairs: number) => void;
  /** Called after each batch is saved (and once for what a checkpoint resumed): where the shard is. */
  onBatch?: (batch: ShardBatchDone) => void;
  /** The fingerprint of the shard's input as planned, kept in its completion marker. */
  fingerprint?: string;
}

/**
 * A shard's position after a batch: its pairs [0, pairsDone) are saved in its checkpoint, so an
 * interruption from here redoes only the batch in progress. A typed hook for progress displays,
 * job progress and interrupt messages.
 */
export interface ShardBatchDone {
  shardId: string;
  /** Pairs of the shard done and saved so far (those resumed from a checkpoint included). */
  pairsDone: number;
  /** Pairs in this batch (for a resume: every pair the checkpoint held). */
  pairs: number;
  /** This "batch" is what the checkpoint of an interrupted attempt held, not model work. */
  resumed: boolean;
}

export async function* batches<T>(
  items: AsyncIterable<T>,
  size: number,
  timings: StageTimings,
): AsyncGenerator<T[]> {
  let batch: T[] = [];
  const it = items[Symbol.asyncIterator]();
  for (;;) {
    const t0 = performance.now();
    const next = await it.next();
    timings.read += performance.now() - t0;
    if (next.done) break;
    batch.push(next.value);
    if (batch.length >= size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/**
 * Runs `load` on up to `depth` upcoming batches while the consumer works on the current one:
 * decoding overlaps model inference, and at most depth+1 batches are in memory.
 */
export async function* prefetched<T, U>(
  source: AsyncIterable<T>,
  depth: number,
  load: (item: T) => Promise<U>,
): AsyncGenerator<U> {
  const it = source[Symbol.asyncIterator]();
  const queue: Promise<IteratorResult<U>>[] = [];
  let exhausted = false;
  // Reads stay in order: each pull waits for the previous one, loads run concurrently.
  let chain: Promise<unknown> = Promise.resolve();
  const pull = (): Promise<IteratorResult<U>> => {
    const p = chain.then(async (): Promise<IteratorResult<U>> => {
      if (exhausted) return { done: true, value: undefined };
      const n = await it.next();
      if (n.done) {
        exhausted = true;
        return { done: true, value: undefined };
      }
      return { done: false, value: await load(n.value) };
    });
    chain = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  };
  try {
    for (let i = 0; i <= depth; i++) queue.push(pull());
    for (;;) {
      const head = queue.shift() as Promise<IteratorResult<U>>;
      const r = await head;
      if (r.done) return;
      queue.push(pull());
      yield r.value;
    }
  } finally {
    for (const p of queue) p.catch(() => undefined);
    await it.return?.(undefined);
  }
}

function openWriter(
  shard: ShardRef,
  ctx: Pick<ShardContext, 'storage' | 'options' | 'output'>,
): Promise<ShardWriter> {
  const { compression, format } = ctx.options.output;
  return ShardWriter.open(ctx.storage, ctx.output, shard, compression, format);
}

function aborted(signal: AbortSignal | undefined, shardId: string): void {
  if (signal?.aborted) throw new ShardError(shardId, 'interrupted', { cause: signal.reason });
}

/**
 * Reads, decodes, captions, filters and writes one shard: `part-<shard>.jsonl` (atomically), then
 * its stats marker. Each finished batch is checkpointed first, so an interrupted shard resumes
 * where it stopped. Per-sample failures become rejected records; a per-shard failure (input gone,
 * output unwritable, interrupted) throws a ShardError and leaves no data file.
 */
export async function processShard(shard: ShardRef, ctx: ShardContext): Promise<ShardStats> {
  const startedAt = new Date();
  const timings = emptyTimings();
  const writer = await openWriter(shard, ctx);
  // A WebDataset packs each batch's images as they were read; only checkpointed batches (which
  // come back without them) are read again from the input, as the queue's write job reads them.
  const images = carriesImages(ctx.options.output.format) ? new ShardImages(shard, ctx) : null;
  try {
    for await (const records of shardRecords(shard, ctx, timings, (batch) => images?.keep(batch))) {
      const t0 = performance.now();
      await writer.append(records, images ? await images.of(records) : undefined);
      timings.write += performance.now() - t0;
      ctx.onProgress?.(records.length);
    }
    aborted(ctx.signal, shard.id);
    const stats = await writer.commit(timings, startedAt, recordOptions(ctx.options), ctx.fingerprint);
    await clearCheckpoint(ctx.storage, ctx.output, shard.id);
    return stats;
  } catch (err) {
    await writer.abort();
    throw shardFailure(shard, err);
  } finally {
    await images?.close();
  }
}

/**
 * The records of a shard, batch by batch, in pair order: first what its checkpoint holds from an
 * interrupted attempt, then the model stages over the pairs after it, each batch saved to the
 * checkpoint before it is yielded. The local runner and the fused worker job both read this.
 */
export async function* shardRecords(
  shard: ShardRef,
  ctx: ShardContext,
  timings: StageTimings,
  /** Sees each decoded batch before the models run on it. */
  onLoaded?: (batch: readonly LoadedSample[]) => void,
): AsyncGenerator<OutputRecord[]> {
  const key = checkpointKey(ctx.fingerprint, ctx.options, modelIds(ctx));
  yield* checkpointedBatches(
    shard,
    ctx,
    timings,
    ShardCheckpoint.for(ctx.storage, ctx.output, shard.id, key),
    (batch) => {
      onLoaded?.(batch);
      return modelStages(batch, ctx, timings);
    },
  );
}

/**
 * One stage's results of a shard, batch by batch, in pair order: first what `checkpoint` holds
 * from an interrupted attempt, then `work` over the decoded batches after it (given each batch's
 * first pair), each saved to the checkpoint before it is yielded. shardRecords (local runs, fused
 * jobs) and the split-mode caption and filter jobs share it.
 */
export async function* checkpointedBatches<T>(
  shard: ShardRef,
  ctx: ShardContext,
  timings: StageTimings,
  checkpoint: ShardCheckpoint<T>,
  work: (batch: LoadedSample[], firstPair: number) => Promise<T[]>,
): AsyncGenerator<T[]> {
  const resumed = await checkpoint.resume();
  let pairsDone = resumed.pairs;
  if (pairsDone > 0) {
    ctx.onBatch?.({ shardId: shard.id, pairsDone, pairs: pairsDone, resumed: true });
    for (const items of resumed.batches) yield items;
  }
  for await (const batch of loadedBatches(shard, ctx, timings, ctx.prefetch ?? 2, pairsDone)) {
    aborted(ctx.signal, shard.id);
    const items = await work(batch, pairsDone);
    await checkpoint.save(pairsDone, batch.length, items);
    pairsDone += batch.length;
    ctx.onBatch?.({ shardId: shard.id, pairsDone, pairs: batch.length, resumed: false });
    yield items;
  }
}

/** `items` less the first `n` (read, never decoded: a resumed shard's checkpointed pairs). */
async function* skipped<T>(items: AsyncIterable<T>, n: number): AsyncGenerator<T> {
  let i = 0;
  for await (const item of items) if (i++ >= n) yield item;
}

/** A shard's pairs in decoded batches, decoding up to `prefetch` batches ahead of the models. */
export function loadedBatches(
  shard: ShardRef,
  ctx: StageContext,
  timings: StageTimings,
  prefetch: number,
  skip = 0,
): AsyncGenerator<LoadedSample[]> {
  return prefetched<PairRef[], LoadedSample[]>(
    batches(skipped(readShardPairs(shard, ctx), skip), ctx.options.batchSize, timings),
    prefetch,
    async (batch) => {
      const t0 = performance.now();
      const out = await loadSamples(batch, ctx);
      timings.decode += performance.now() - t0;
      return out;
    },
  );
}

/**
 * A missing input, bad options or an unusable model fail the shard for good (retrying cannot
 * help); anything else (a network error, a full disk) may be retried.
 */
export function shardFailure(shard: ShardRef, err: unknown): ShardError {
  if (err instanceof ShardError) return err;
  return new ShardError(shard.id, errorMessage(err), { cause: err, retryable: !isPermanent(err) });
}

/** Caption → filter → records for one decoded batch, timing each model. */
export async function modelStages(
  batch: LoadedSample[],
  ctx: StageContext,
  timings: StageTimings,
): Promise<OutputRecord[]> {
  let t0 = performance.now();
  const captioned = await captionSamples(batch, ctx);
  timings.caption += performance.now() - t0;
  t0 = performance.now();
  const scored = await filterSamples(captioned, ctx);
  timings.filter += performance.now() - t0;
  return buildRecords(scored, ctx.options, modelIds(ctx));
}

/**
 * Writes already-built records of a shard (for workers that split the stages across processes):
 * data file atomically, then the marker.
 */
export async function writeShardOutput(
  shard: ShardRef,
  records: AsyncIterable<OutputRecord[]> | Iterable<OutputRecord[]>,
  ctx: Pick<ShardContext, 'storage' | 'options' | 'output' | 'fingerprint'>,
  timings: StageTimings = emptyTimings(),
  startedAt: Date = new Date(),
): Promise<ShardStats> {
  const writer = await openWriter(shard, ctx);
  // Records that crossed a job boundary come without their images: read them again for the tar.
  const images = carriesImages(ctx.options.output.format) ? new ShardImages(shard, ctx) : null;
  try {
    for await (const batch of records) {
      const t0 = performance.now();
      await writer.append(batch, images ? await images.of(batch) : undefined);
      timings.write += performance.now() - t0;
    }
    const stats = await writer.commit(timings, startedAt, recordOptions(ctx.options), ctx.fingerprint);
    // The checkpoint of the model job that made these records is not needed any more.
    await clearCheckpoint(ctx.storage, ctx.output, shard.id);
    return stats;
  } catch (err) {
    await writer.abort();
    throw shardFailure(shard, err);
  } finally {
    await images?.close();
  }
}
