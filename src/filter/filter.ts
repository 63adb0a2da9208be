import type * as ort from 'onnxruntime-node';
import type { FilterOptions, TextScore } from '../core/types.js';
import { GRAPHS, IO } from '../model/io-names.js';
import type { ModelManifest } from '../model/manifest.js';
import { mapBatches } from '../model/runtime/batching.js';
import { BlipEngine, type EngineOptions, loadModel } from '../model/runtime/engine.js';
import { int64, ModelSessions } from '../model/runtime/runtime.js';
import { encodeForItm, type ItmEncoding } from '../model/runtime/tokenizer.js';
import { MAX_TEXTS_PER_CALL, padTexts, planScoring } from './text-calls.js';

export interface ScoreSample {
  key: string;
  /** This model's pixel tensor, CHW float32 (see Filter.pixels). */
  pixels: Float32Array;
  /** Texts to score against the image, already normalised if that is wanted. */
  texts: string[];
}

export type ScoreOptions = Pick<FilterOptions, 'firstToken' | 'maxTextLength'> & {
  /**
   * The keep/drop threshold of the run. A filter with a recheck set (an int8 model imported with
   * --recheck-margin) scores again in fp32 every image with a text whose probability lies within
   * the margin of it; without a threshold nothing is rechecked.
   */
  threshold?: number;
};

/** Text i's ITM P(match) from logits [T, 2]: softmax(logits)[1] = 1 / (1 + e^(l0 - l1)), in float64. */
function matchProbability(logits: Float32Array, i: number): number {
  return 1 / (1 + Math.exp(logits[2 * i] - logits[2 * i + 1]));
}

/**
 * BLIP's filter (BlipForImageTextRetrieval) on onnxruntime: one vision pass and one
 * cross-attention K/V computation per image, shared by every text scored against it.
 */
export class Filter extends BlipEngine {
  /** The same model's fp32 graphs, for texts near the threshold (an int8 model's recheck set). */
  private recheck: { filter: Filter; margin: number } | null = null;
  /** Texts whose scores came from the recheck set, since load. */
  rechecked = 0;

  static async load(modelDir: string, options: EngineOptions = {}): Promise<Filter> {
    const model = await loadModel(modelDir, 'filter', options);
    const filter = new Filter(model);
    const recheck = model.manifest.recheck;
    if (recheck) {
      const manifest: ModelManifest = { ...model.manifest, precision: 'fp32', graphs: recheck.graphs };
      delete manifest.recheck;
      delete manifest.quantization;
      const sessions = new ModelSessions(modelDir, manifest, model.device, options);
      filter.recheck = {
        filter: new Filter({ ...model, manifest, sessions, wholeGraph: false }),
        margin: recheck.margin,
      };
    }
    return filter;
  }

  /** ITM match probability and ITC cosine of every text of every sample. */
  async score(samples: readonly ScoreSample[], options: ScoreOptions): Promise<TextScore[][]> {
    const scores = await mapBatches(
      samples,
      this.batchSize,
      (batch) => this.exclusive(() => this.scoreBatch(batch, options)),
      (size) => this.warn(`out of memory while filtering; batch size lowered to ${size}`),
    );
    const { recheck } = this;
    const { threshold } = options;
    if (!recheck || threshold === undefined) return scores;
    const near = samples.flatMap((_, i) =>
      scores[i].some((s) => Math.abs(s.itm - threshold) < recheck.margin) ? [i] : [],
    );
    if (near.length === 0) return scores;
    const exact = await recheck.filter.score(
      near.map((i) => samples[i]),
      options,
    );
    near.forEach((i, j) => {
      scores[i] = exact[j];
      this.rechecked += exact[j].length;
    });
    return scores;
  }

  override async close(): Promise<void> {
    await Promise.all([super.close(), this.recheck?.filter.close()]);
  }

  /** image_embeds [B, N, Dv] and the normalised ITC image features [B, E] of a batch. */
  async encode(
    samples: readonly { pixels: Float32Array }[],
  ): Promise<{ imageEmbeds: Float32Array; imageFeat: Float32Array }> {
    return this.exclusive(async () => {
      const { imageEmbeds, imageFeat } = await this.encodeImages(samples);
      return { imageEmbeds, imageFeat: imageFeat as Float32Array };
    });
  }

  /**
   * A batch in one whole-graph call: each image's texts image-major, k per image (the most any
   * image has; an image with fewer repeats its first text, whose extra scores are dropped), every
   * text padded to the longest. Only pixels, token ids and scores cross onnxruntime.
   */
  private async scoreInGraph(samples: ScoreSample[], options: ScoreOptions): Promise<TextScore[][]> {
    const images = samples.filter((s) => s.texts.length > 0);
    const scores: TextScore[][] = samples.map((s) => s.texts.map(() => ({ itm: 0, itc: 0 })));
    if (images.length === 0) return scores;
    const k = Math.max(...images.map((s) => s.texts.length));
    const texts = images.flatMap((s) => Array.from({ length: k }, (_, j) => s.texts[j] ?? s.texts[0]));
    const tokens = (firstToken: 'enc' | 'cls') =>
      padTexts(
        texts.map((t) => encodeForItm(this.tokenizer, t, { maxLength: options.maxTextLength, firstToken })),
        this.manifest.specialIds.pad,
      );
    const itm = tokens(options.firstToken);
    const itc = tokens('cls');
    const out = await (await this.session(GRAPHS.score)).run({
      [IO.pixelValues]: this.pixelBatch(images),
      [IO.inputIds]: int64(itm.ids, [texts.length, itm.length]),
      [IO.attentionMask]: int64(itm.mask, [texts.length, itm.length]),
      [IO.itcInputIds]: int64(itc.ids, [texts.length, itc.length]),
      [IO.itcAttentionMask]: int64(itc.mask, [texts.length, itc.length]),
    });
    const logits = out[IO.itmLogits].data as Float32Array;
    const cosines = out[IO.itc].data as Float32Array;
    let i = 0;
    for (const [s, sample] of samples.entries()) {
      if (sample.texts.length === 0) continue;
      for (let j = 0; j < k; j++, i++) {
        if (j < sample.texts.length) scores[s][j] = { itm: matchProbability(logits, i), itc: cosines[i] };
      }
    }
    return scores;
  }

  /**
   * Scores a batch: in one whole-graph call when the engine uses them; otherwise texts are
   * tokenized first so that the images can be encoded in the order of their ITM calls (see
   * text-calls.ts): each call then reads its cross keys/values as one contiguous run of rows, and
   * texts of similar length share a call.
   */
  private async scoreBatch(samples: ScoreSample[], options: ScoreOptions): Promise<TextScore[][]> {
    const scores =
      this.wholeGraph && this.sessions.has(GRAPHS.score)
        ? await this.scoreInGraph(samples, options)
        : await this.scoreFromHost(samples, options);
    this.images += samples.length;
    return scores;
  }

  private async scoreFromHost(samples: ScoreSample[], options: ScoreOptions): Promise<TextScore[][]> {
    const encode = (firstToken: 'enc' | 'cls') =>
      samples.map((s) =>
        s.texts.map((t) => encodeForItm(this.tokenizer, t, { maxLength: options.maxTextLength, firstToken })),
      );
    const itmTokens = encode(options.firstToken);
    const itcTokens = encode('cls');
    const plan = planScoring(
      itmTokens.map((texts) => texts.map((e) => e.inputIds.length)),
      MAX_TEXTS_PER_CALL,
    );
    const { imageFeat } = await this.encodeImages(plan.imageOrder.map((i) => samples[i]));
    const scores = samples.map((s) => s.texts.map(() => ({ itm: 0, itc: 0 })));
    for (const call of plan.itm) {
      const itm = await this.itmProbabilities(
        call.texts.map((r) => itmTokens[r.sample][r.text]),
        this.crossCache.fetches(call.firstRow, call.rows),
      );
      call.texts.forEach((r, i) => {
        scores[r.sample][r.text].itm = itm[i];
      });
    }
    const row = new Map(plan.imageOrder.map((sample, r) => [sample, r]));
    const dim = this.manifest.imageTextHiddenSize;
    const image = imageFeat as Float32Array;
    for (const call of plan.itc) {
      const textFeat = await this.textFeatures(call.map((r) => itcTokens[r.sample][r.text]));
      call.forEach((r, i) => {
        const offset = (row.get(r.sample) as number) * dim;
        let cosine = 0;
        for (let d = 0; d < dim; d++) cosine += image[offset + d] * textFeat[i * dim + d];
        scores[r.sample][r.text].itc = cosine;
      });
    }
    return scores;
  }

  /** ITM P(match) of texts given image-major, the same number per cross-attention row. */
  private async itmProbabilities(texts: ItmEncoding[], cross: Record<string, ort.Tensor>): Promise<number[]> {
    const { ids, mask, length } = padTexts(texts, this.manifest.specialIds.pad);
    const logits = (
      await (
        await this.session(GRAPHS.itm)
      ).run({
        [IO.inputIds]: int64(ids, [texts.length, length]),
        [IO.attentionMask]: int64(mask, [texts.length, length]),
        ...cross,
      })
    )[IO.itmLogits].data as Float32Array;
    return texts.map((_, i) => matchProbability(logits, i));
  }

  /** Normalised ITC text features; the unimodal text encoder keeps [CLS] first, as BLIP's ITC does. */
  private async textFeatures(texts: ItmEncoding[]): Promise<Float32Array> {
    const { ids, mask, length } = padTexts(texts, this.manifest.specialIds.pad);
    const out = await (await this.session(GRAPHS.itcText)).run({
      [IO.inputIds]: int64(ids, [texts.length, length]),
      [IO.attentionMask]: int64(mask, [texts.length, length]),
    });
    return out[IO.textFeat].data as Float32Array;
  }
}
