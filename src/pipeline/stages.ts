/**
 * The pipeline's stages as plain async functions over typed values. The local runner and the
 * BullMQ workers compose these same functions; none of them knows about queues or progress bars.
 */
import pMap from 'p-map';
import {
  BlockedSourceError,
  errorMessage,
  NotFoundError,
  ReadTimeoutError,
  SampleError,
  TooLargeError,
} from '../core/errors.js';
import { recordOptions } from '../core/options.js';
import type {
  CaptionedSample,
  LoadedSample,
  OutputRecord,
  PairRef,
  RecordModels,
  Rejection,
  RunOptions,
  ScoredSample,
  ShardRef,
} from '../core/types.js';
import { decideTexts } from '../filter/decision.js';
import { preCaption } from '../filter/normalize.js';
import { withDecodedImage } from '../io/image.js';
import type { PixelBudget } from '../io/pixel-budget.js';
import { readShard } from '../io/readers/index.js';
import type { Storage } from '../io/storage/storage.js';
import { carriesImages } from '../output/dataset-writer.js';
import type { CaptionEngine, FilterEngine } from './engines.js';

/** What the stages need: where to read, the engines (absent for human-only work) and the options. */
export interface StageContext {
  storage: Storage;
  options: RunOptions;
  captioner: CaptionEngine | null;
  filter: FilterEngine | null;
  /** Decoded pixels in flight; the process's own budget (io/pixel-budget.ts) when absent. */
  pixelBudget?: PixelBudget;
}

/** Every pair of a shard in order, bad rows included as rejected markers. */
export async function* readShardPairs(
  shard: ShardRef,
  ctx: Pick<StageContext, 'storage' | 'options'>,
): AsyncGenerator<PairRef> {
  for await (const pair of readShard(ctx.storage, shard, ctx.options.input, ctx.options.limits)) {
    if (shard.human) pair.human = true;
    yield pair;
  }
}

function rejectionOf(key: string, err: unknown): Rejection {
  if (err instanceof SampleError) return { reason: err.reason, message: err.message };
  if (err instanceof NotFoundError) return { reason: 'missing_object', message: `${key}: ${err.message}` };
  if (err instanceof TooLargeError) return { reason: 'too_large', message: `${key}: ${err.message}` };
  if (err instanceof BlockedSourceError)
    return { reason: 'blocked_source', message: `${key}: ${err.message}` };
  if (err instanceof ReadTimeoutError) return { reason: 'timeout', message: `${key}: ${err.message}` };
  return { reason: 'download_failed', message: `${key}: ${errorMessage(err)}` };
}

/** A pair's encoded image bytes, from the tar member in hand or read from where it lives. */
export async function imageBytes(
  pair: PairRef,
  ctx: Pick<StageContext, 'storage' | 'options'>,
): Promise<Buffer> {
  const image = pair.image;
  if (!image) throw new SampleError(pair.key, 'missing_image', 'no image reference');
  if (image.kind === 'inline')
    return Buffer.from(image.bytes.buffer, image.bytes.byteOffset, image.bytes.byteLength);
  // The run's limits and source policy: a reference outside the run's sources is never opened.
  return ctx.storage.read(image.uri, {
    key: pair.key,
    limits: ctx.options.limits,
    sources: ctx.options.sources,
  });
}

function sameImageSpec(ctx: StageContext): boolean {
  const a = ctx.captioner?.manifest?.image;
  const b = ctx.filter?.manifest?.image;
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

async function loadOne(pair: PairRef, ctx: StageContext, shareable: boolean): Promise<LoadedSample> {
  if (pair.invalid) return { ref: pair, rejection: pair.invalid };
  try {
    const bytes = await imageBytes(pair, ctx);
    const l = ctx.options.limits;
    const limits = { maxBytes: l.maxBytes, maxPixels: l.maxPixels, timeoutMs: l.decodeTimeoutMs };
    // The decoded RGB lives, inside the pixel budget, only until the models' tensors are made.
    return await withDecodedImage(
      bytes,
      pair.key,
      limits,
      (image) => {
        const sample: LoadedSample = { ref: pair, width: image.width, height: image.height };
        // Packed into the shard's tar later: kept rather than fetched a second time.
        if (carriesImages(ctx.options.output.format)) sample.bytes = bytes;
        if (!pair.human) {
          if (ctx.captioner) sample.captionerPixels = ctx.captioner.pixels(image);
          if (ctx.filter) {
            sample.filterPixels =
              shareable && sample.captionerPixels ? sample.captionerPixels : ctx.filter.pixels(image);
          }
        }
        return sample;
      },
      ctx.pixelBudget,
    );
  } catch (err) {
    return { ref: pair, rejection: rejectionOf(pair.key, err) };
  }
}

/**
 * Fetches and decodes a batch (bounded concurrency) into each engine's pixel tensor. Never
 * throws for a sample: failures become rejections with a reason.
 */
export async function loadSamples(pairs: readonly PairRef[], ctx: StageContext): Promise<LoadedSample[]> {
  const shareable = sameImageSpec(ctx);
  return pMap(pairs, (pair) => loadOne(pair, ctx, shareable), {
    concurrency: ctx.options.limits.concurrency,
  });
}

const needsModels = (s: LoadedSample) => !s.rejection && !s.ref.human;

/** Synthesizes captions for the samples that reached the model path. */
export async function captionSamples(
  samples: readonly LoadedSample[],
  ctx: StageContext,
): Promise<CaptionedSample[]> {
  const todo = samples.filter(needsModels);
  const out = samples.map((s) => ({ ...s, captions: [] })) as CaptionedSample[];
  if (todo.length === 0 || ctx.options.decoding.numCaptions === 0) return out;
  if (!ctx.captioner) throw new Error('captionSamples needs a captioner');
  const captions = await ctx.captioner.caption(
    todo.map((s) => ({ key: s.ref.key, pixels: s.captionerPixels as Float32Array })),
    ctx.options.decoding,
  );
  let j = 0;
  for (const s of out) if (needsModels(s)) s.captions = captions[j++];
  return out;
}

/** The web text as the filter scores it: BLIP's pre_caption unless disabled. */
export function webTextForScoring(text: string, options: RunOptions): string {
  return options.filter.normalizeWebText ? preCaption(text) : text;
}

/** ITM/ITC scores for the web text and every synthetic caption of each sample. */
export async function filterSamples(
  samples: readonly CaptionedSample[],
  ctx: StageContext,
): Promise<ScoredSample[]> {
  const out = samples.map((s) => ({ ...s, webScore: null, syntheticScores: [] })) as ScoredSample[];
  const todo = out.filter(needsModels);
  if (todo.length === 0) return out;
  if (!ctx.filter) throw new Error('filterSamples needs a filter');
  const scores = await ctx.filter.score(
    todo.map((s) => ({
      key: s.ref.key,
      pixels: s.filterPixels as Float32Array,
      texts: [webTextForScoring(s.ref.text ?? '', ctx.options), ...s.captions.map((c) => c.text)],
    })),
    {
      firstToken: ctx.options.filter.firstToken,
      maxTextLength: ctx.options.filter.maxTextLength,
      threshold: ctx.options.filter.threshold,
    },
  );
  todo.forEach((s, i) => {
    s.webScore = scores[i][0];
    s.syntheticScores = scores[i].slice(1);
  });
  return out;
}

/** The ids of the models a stage context runs, for the records' provenance. */
export function modelIds(ctx: Pick<StageContext, 'captioner' | 'filter'>): RecordModels {
  return { captioner: ctx.captioner?.modelId ?? null, filter: ctx.filter?.modelId ?? null };
}

/** One output record per sample: the CapFilt decision applied to the scores. */
export function buildRecords(
  samples: readonly ScoredSample[],
  runOptions: RunOptions,
  models: RecordModels,
): OutputRecord[] {
  const options = recordOptions(runOptions);
  return samples.map((s) => {
    const base: OutputRecord = {
      key: s.ref.key,
      source: s.ref.source,
      shard: s.ref.shardId,
      index: s.ref.index,
      width: s.width ?? null,
      height: s.height ?? null,
      web: null,
      synthetic: [],
      texts: [],
      status: 'ok',
      reason: null,
      error: null,
      human: s.ref.human === true,
      meta: s.ref.meta,
      models,
      options,
    };
    if (s.rejection) {
      return {
        ...base,
        web:
          s.ref.text != null && s.ref.text !== ''
            ? { text: s.ref.text, itm: null, itc: null, kept: false }
            : null,
        status: 'rejected',
        reason: s.rejection.reason,
        error: s.rejection.message,
      };
    }
    const text = s.ref.text ?? '';
    if (s.ref.human) {
      return { ...base, web: { text, itm: null, itc: null, kept: true }, texts: [text] };
    }
    return applyDecision(base, text, s.webScore, s.captions, s.syntheticScores, runOptions);
  });
}

/** Fills web/synthetic/texts of a record from scores; shared with `capfilt refilter`. */
export function applyDecision(
  base: OutputRecord,
  webText: string,
  webScore: { itm: number; itc: number } | null,
  captions: readonly { text: string; tokenIds?: number[] }[],
  syntheticScores: readonly { itm: number; itc: number }[],
  options: RunOptions,
): OutputRecord {
  const decision = decideTexts(
    {
      web: webScore ? { text: webText, score: webScore } : null,
      synthetic: captions.map((c, i) => ({ text: c.text, score: syntheticScores[i] })),
    },
    {
      threshold: options.filter.threshold,
      consider: options.filter.consider,
      keepTop: options.filter.keepTop,
    },
  );
  return {
    ...base,
    web: { text: webText, itm: webScore?.itm ?? null, itc: webScore?.itc ?? null, kept: decision.webKept },
    synthetic: captions.map((c, i) => ({
      text: c.text,
      token_ids: c.tokenIds ?? [],
      itm: syntheticScores[i].itm,
      itc: syntheticScores[i].itc,
      kept: decision.syntheticKept[i],
    })),
    texts: decision.texts,
  };
}
