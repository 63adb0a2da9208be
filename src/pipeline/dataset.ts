/** Reading a capfilt output dataset back: `refilter` (re-decide from stored scores) and `export`. */
import { UsageError } from '../core/errors.js';
import { definedOnly, recordOptions, runOptions } from '../core/options.js';
import type { FilterOptions, OutputRecord, RecordOptions, RunOptions, ShardStats } from '../core/types.js';
import { absoluteLocation } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { type CompletedShard, completedShards } from '../output/completion.js';
import { lockOutput } from '../output/lock.js';
import { prepareOutput } from '../output/prepare.js';
import { readRecords } from '../output/read.js';
import { type OutputPlan, readRunRecord } from '../output/run-record.js';
import { ShardWriter } from '../output/shard-writer.js';
import { emptyTimings } from '../output/stats.js';
import { writeSummary } from '../output/summary.js';
import { applyDecision } from './stages.js';

/** RunOptions as far as a stored record's provenance tells them. */
export function optionsFromRecord(o: RecordOptions): RunOptions {
  return runOptions({
    filter: {
      threshold: o.threshold,
      consider: o.consider,
      keepTop: o.top_k_texts,
      firstToken: o.first_token,
      normalizeWebText: o.normalize_web_text,
    },
    decoding: {
      strategy: o.strategy,
      topP: o.top_p,
      topK: o.top_k,
      repetitionPenalty: o.repetition_penalty,
      numBeams: o.num_beams,
      maxLength: o.max_length,
      minLength: o.min_length,
      prompt: o.prompt,
      numCaptions: o.num_captions,
      seed: o.seed,
    },
  });
}

export type RefilterOptions = Partial<Pick<FilterOptions, 'threshold' | 'consider' | 'keepTop'>>;

/** One record re-decided from its stored scores (no model): rejected and human records keep their texts. */
export function refilterRecord(r: OutputRecord, change: RefilterOptions): OutputRecord {
  const options = optionsFromRecord(r.options);
  options.filter = { ...options.filter, ...definedOnly(change) };
  const provenance = recordOptions(options);
  if (r.status !== 'ok' || r.human || !r.web || r.web.itm === null || r.web.itc === null) {
    return { ...r, options: provenance };
  }
  return applyDecision(
    { ...r, options: provenance },
    r.web.text,
    { itm: r.web.itm, itc: r.web.itc },
    r.synthetic.map((s) => ({ text: s.text, tokenIds: s.token_ids })),
    r.synthetic.map((s) => ({ itm: s.itm, itc: s.itc })),
    options,
  );
}

export interface RefilterResult {
  shards: number;
  records: number;
  keptTexts: number;
}

/**
 * What a refiltered output is, as its run record keeps it: the source output's run with the
 * decision changed (for a source without a record, the options its records were made with).
 */
async function refilterPlan(
  storage: Storage,
  input: string,
  shards: readonly CompletedShard[],
  change: RefilterOptions,
  compression: 'none' | 'gzip',
): Promise<OutputPlan> {
  const source = await readRunRecord(storage, input);
  const base = source?.options ?? optionsFromRecord(shards[0].stats.options);
  return {
    input,
    human: source?.human ?? [],
    options: { ...base, filter: { ...base.filter, ...definedOnly(change) }, output: { compression } },
    models: source?.models ?? shards[0].stats.models,
    refilteredFrom: input,
    shards: shards.map((s) => ({
      shard: s.stats.shard,
      pairs: s.stats.records,
      fingerprint: s.stats.fingerprint ?? '',
    })),
  };
}

/** One shard's records re-decided into `output`. */
async function refilterShard(
  storage: Storage,
  s: CompletedShard,
  output: string,
  change: RefilterOptions,
  compression: 'none' | 'gzip',
): Promise<ShardStats> {
  const started = new Date();
  const writer = await ShardWriter.open(storage, output, s.stats.shard, compression);
  try {
    let batch: OutputRecord[] = [];
    for await (const r of readRecords(storage, s.data)) {
      batch.push(refilterRecord(r, change));
      if (batch.length >= 512) {
        await writer.append(batch);
        batch = [];
      }
    }
    await writer.append(batch);
    const fallback = {
      ...s.stats.options,
      ...definedOnly({ threshold: change.threshold, consider: change.consider, top_k_texts: change.keepTop }),
    };
    return await writer.commit(emptyTimings(), started, fallback, s.stats.fingerprint);
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/**
 * `capfilt refilter`: DataComp-style re-thresholding of a finished output into a new one, which
 * records its run like any output (so it is refused when it holds another, unless `overwrite`).
 */
export async function refilter(
  storage: Storage,
  input: string,
  output: string,
  change: RefilterOptions,
  compression: 'none' | 'gzip' = 'none',
  overwrite = false,
): Promise<RefilterResult> {
  const from = absoluteLocation(input);
  const to = absoluteLocation(output);
  const shards = await finishedShards(storage, from);
  const lock = await lockOutput(to);
  try {
    const plan = await refilterPlan(storage, from, shards, change, compression);
    await prepareOutput(storage, to, plan, { overwrite });
    const all: ShardStats[] = [];
    for (const s of shards) all.push(await refilterShard(storage, s, to, change, compression));
    const summary = await writeSummary(storage, to, all, { input: from, refilteredFrom: from });
    return { shards: all.length, records: summary.records, keptTexts: summary.kept.texts };
  } finally {
    await lock.release();
  }
}

/** One BLIP/LAVIS annotation: the image (path or S3 URI) or url, and one kept caption. */
export type BlipAnnotation = { image: string; caption: string } | { url: string; caption: string };

/** The complete shards of a finished output; throws (before anything is written) when there are none. */
async function finishedShards(storage: Storage, input: string): Promise<CompletedShard[]> {
  const shards = await completedShards(storage, input);
  if (shards.length === 0) throw new UsageError(`${input} holds no completed capfilt shards`);
  return shards;
}

export async function* blipAnnotations(storage: Storage, input: string): AsyncGenerator<BlipAnnotation> {
  yield* annotationsOf(storage, await finishedShards(storage, input));
}

async function* annotationsOf(
  storage: Storage,
  shards: readonly CompletedShard[],
): AsyncGenerator<BlipAnnotation> {
  for (const s of shards) {
    for await (const r of readRecords(storage, s.data)) {
      if (r.status !== 'ok') continue;
      const isUrl = /^https?:\/\//i.test(r.source);
      for (const caption of r.texts) yield isUrl ? { url: r.source, caption } : { image: r.source, caption };
    }
  }
}

/** `capfilt export --format blip`: a JSON list, one entry per kept text, streamed out. */
export async function exportBlip(
  storage: Storage,
  input: string,
  write: (chunk: string) => Promise<void>,
): Promise<number> {
  // A missing or empty input fails before the first byte is written.
  const shards = await finishedShards(storage, input);
  let n = 0;
  await write('[');
  for await (const a of annotationsOf(storage, shards)) {
    await write(`${n === 0 ? '\n' : ',\n'}${JSON.stringify(a)}`);
    n++;
  }
  await write(n === 0 ? ']\n' : '\n]\n');
  return n;
}
