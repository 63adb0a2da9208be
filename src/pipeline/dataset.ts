/** Reading a capfilt output dataset back: `refilter` (re-decide from stored scores) and `export`. */
import { DEFAULT_SOURCES } from '../core/defaults.js';
import { UsageError } from '../core/errors.js';
import { definedOnly, recordOptions, runOptions } from '../core/options.js';
import type {
  FilterOptions,
  OutputRecord,
  RecordOptions,
  RunOptions,
  ShardStats,
  SourcePolicy,
} from '../core/types.js';
import { absoluteLocation, isInside, joinUri, relativeUri } from '../io/location.js';
import { sourcePolicyFor } from '../io/sources.js';
import type { Storage } from '../io/storage/storage.js';
import { type CompletedShard, completedShards } from '../output/completion.js';
import {
  carriesImages,
  type DatasetFileFormat,
  inDataset,
  openDatasetWriter,
} from '../output/dataset-writer.js';
import { lockOutput } from '../output/lock.js';
import { prepareOutput } from '../output/prepare.js';
import { readRecords } from '../output/read.js';
import { type OutputPlan, readRunRecord } from '../output/run-record.js';
import { ShardWriter } from '../output/shard-writer.js';
import { emptyTimings } from '../output/stats.js';
import { writeSummary } from '../output/summary.js';
import { imageExtension, UniqueNames } from '../output/webdataset-writer.js';
import { ShardImages } from './images.js';
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
    input: {
      ...(o.image_column ? { imageColumn: o.image_column } : {}),
      ...(o.text_column ? { textColumn: o.text_column } : {}),
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
    options: {
      ...base,
      filter: { ...base.filter, ...definedOnly(change) },
      output: { compression, format: 'jsonl' },
    },
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

export interface ExportOptions {
  /**
   * Where images may be read again besides the shards' own inputs (export's `--allow-root`,
   * `--allow-bucket`: what a run given those flags could read).
   */
  sources?: SourcePolicy;
}

/** Opens one shard's input again for its images. */
type OpenImages = (s: CompletedShard) => ShardImages;

/**
 * Images are read again as their run read them: with the run's recorded options and source policy
 * (`_capfilt-run.json`), widened by `options.sources`. An output of an older release, without a
 * record: each shard's input folder or bucket (as `run` derives them) and its records' options.
 */
async function imageReader(
  storage: Storage,
  output: string,
  shards: readonly CompletedShard[],
  options: ExportOptions,
): Promise<OpenImages> {
  const record = await readRunRecord(storage, output);
  const widen = options.sources ?? DEFAULT_SOURCES;
  const recorded = record?.options.sources ?? DEFAULT_SOURCES;
  const inputs = record ? [] : [...new Set(shards.map((s) => s.stats.shard.uri))];
  const sources = await sourcePolicyFor(storage, inputs, {
    localRoots: [...recorded.localRoots, ...widen.localRoots],
    s3Buckets: [...new Set([...recorded.s3Buckets, ...widen.s3Buckets])],
  });
  return (s) => {
    const run = record?.options ?? optionsFromRecord(s.stats.options);
    return new ShardImages(s.stats.shard, { storage, options: { ...run, sources } });
  };
}

export async function* blipAnnotations(
  storage: Storage,
  input: string,
  options: BlipOptions = {},
): AsyncGenerator<BlipAnnotation> {
  const shards = await finishedShards(storage, input);
  yield* annotationsOf(storage, shards, options, await imageReader(storage, input, shards, options));
}

export interface BlipOptions extends ExportOptions {
  /**
   * The folder image paths are written relative to (LAVIS's `vis_root`): images under it are
   * named by their path there; the others (tar members, Parquet bytes, files elsewhere) are
   * copied into `<root>/<shard>/` first.
   */
  imageRoot?: string;
}

/** Where a BLIP annotation finds each kept image of one shard. */
class ImagePlacer {
  #images: ShardImages | null = null;
  #names = new UniqueNames();

  constructor(
    readonly storage: Storage,
    readonly shard: CompletedShard,
    readonly root: string | undefined,
    readonly open: OpenImages,
  ) {}

  /** A source inside the shard's input file (a tar member, a Parquet row's bytes): no loader opens it. */
  #inline(r: OutputRecord): boolean {
    return r.source.startsWith(`${this.shard.stats.shard.uri}#`);
  }

  async place(r: OutputRecord): Promise<{ url: string } | { image: string }> {
    if (/^https?:\/\//i.test(r.source)) return { url: r.source };
    if (this.root === undefined) {
      if (this.#inline(r)) throw inlineImages(r.source);
      return { image: r.source };
    }
    if (!this.#inline(r) && isInside(r.source, this.root)) return { image: relativeUri(this.root, r.source) };
    this.#images ??= this.open(this.shard);
    const [bytes] = await this.#images.of([r]);
    const name = `${this.shard.shardId}/${this.#names.next(r.key)}.${imageExtension(bytes as Uint8Array) ?? 'img'}`;
    await this.storage.write(joinUri(this.root, name), bytes as Uint8Array);
    return { image: name };
  }

  async close(): Promise<void> {
    await this.#images?.close();
  }
}

function inlineImages(example: string): UsageError {
  return new UsageError(
    `the images are inside the input files (e.g. ${example}), which no loader opens; ` +
      'pass --image-root <dir> to copy them out, or export --format webdataset',
  );
}

async function* annotationsOf(
  storage: Storage,
  shards: readonly CompletedShard[],
  options: BlipOptions,
  open: OpenImages,
): AsyncGenerator<BlipAnnotation> {
  for (const s of shards) {
    const placer = new ImagePlacer(storage, s, options.imageRoot, open);
    try {
      for await (const r of readRecords(storage, s.data)) {
        if (!inDataset(r)) continue;
        const where = await placer.place(r);
        for (const caption of r.texts) yield { ...where, caption };
      }
    } finally {
      await placer.close();
    }
  }
}

/** `capfilt export --format blip`: a JSON list, one entry per kept text, streamed out. */
export async function exportBlip(
  storage: Storage,
  input: string,
  write: (chunk: string) => Promise<void>,
  options: BlipOptions = {},
): Promise<number> {
  // A missing or empty input, or tars without an image root, fail before the first byte is written.
  const shards = await finishedShards(storage, input);
  const tar = shards.find((s) => s.stats.shard.format === 'webdataset');
  if (tar && options.imageRoot === undefined) throw inlineImages(`${tar.stats.shard.uri}#…`);
  const open = await imageReader(storage, input, shards, options);
  let n = 0;
  await write('[');
  for await (const a of annotationsOf(storage, shards, options, open)) {
    await write(`${n === 0 ? '\n' : ',\n'}${JSON.stringify(a)}`);
    n++;
  }
  await write(n === 0 ? ']\n' : '\n]\n');
  return n;
}

export interface DatasetExport {
  shards: number;
  /** Images written (WebDataset samples; Parquet: images whose kept texts are rows). */
  samples: number;
}

/** One finished shard's kept records into `<output>/part-<shard>.tar|.parquet` (atomically). */
async function exportShard(
  storage: Storage,
  s: CompletedShard,
  output: string,
  format: DatasetFileFormat,
  open: OpenImages,
): Promise<number> {
  const writer = await openDatasetWriter(storage, output, s.shardId, format);
  const images = carriesImages(format) ? open(s) : null;
  try {
    let batch: OutputRecord[] = [];
    const flush = async () => {
      const bytes = images ? await images.of(batch) : [];
      for (const [i, r] of batch.entries()) if (inDataset(r)) await writer.add(r, bytes[i]);
      batch = [];
    };
    for await (const r of readRecords(storage, s.data)) {
      batch.push(r);
      if (batch.length >= 256) await flush();
    }
    await flush();
    return await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  } finally {
    await images?.close();
  }
}

/**
 * `capfilt export --format webdataset|parquet`: a finished output's clean dataset, one file per
 * shard named as a run with `--output-format` names it. WebDataset images are read again from the
 * run's input (its files must still be where the shard markers say), under the run's source policy.
 */
export async function exportDataset(
  storage: Storage,
  input: string,
  output: string,
  format: DatasetFileFormat,
  options: ExportOptions = {},
): Promise<DatasetExport> {
  const shards = await finishedShards(storage, input);
  if (isInside(output, input)) throw new UsageError(`the export ${output} lies inside the output ${input}`);
  const open = await imageReader(storage, input, shards, options);
  let samples = 0;
  for (const s of shards) samples += await exportShard(storage, s, output, format, open);
  return { shards: shards.length, samples };
}
