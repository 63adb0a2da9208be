import type * as ort from 'onnxruntime-node';
import type { FilterOptions, TextScore } from '../core/types.js';
import { GRAPHS, IO, kvName } from '../model/io-names.js';
import { chunks, mapBatches } from '../model/runtime/batching.js';
import { BlipEngine, type EngineOptions, loadModel } from '../model/runtime/engine.js';
import { int64 } from '../model/runtime/runtime.js';
import { encodeForItm } from '../model/runtime/tokenizer.js';

export interface ScoreSample {
  key: string;
  /** This model's pixel tensor, CHW float32 (see Filter.pixels). */
  pixels: Float32Array;
  /** Texts to score against the image, already normalised if that is wanted. */
  texts: string[];
}

export type ScoreOptions = Pick<FilterOptions, 'firstToken' | 'maxTextLength'>;

/** Texts per ITM/ITC call: enough to keep the GEMMs busy, few enough to bound padding waste. */
const TEXTS_PER_CALL = 64;

/**
 * BLIP's filter (BlipForImageTextRetrieval) on onnxruntime: one vision pass and one
 * cross-attention K/V computation per image, shared by every text scored against it.
 */
export class Filter extends BlipEngine {
  static async load(modelDir: string, options: EngineOptions = {}): Promise<Filter> {
    return new Filter(
      await loadModel(
        modelDir,
        'filter',
        [GRAPHS.vision, GRAPHS.crossKv, GRAPHS.itm, GRAPHS.itcText],
        options,
      ),
    );
  }

  /** ITM match probability and ITC cosine of every text of every sample. */
  async score(samples: readonly ScoreSample[], options: ScoreOptions): Promise<TextScore[][]> {
    return mapBatches(
      samples,
      this.batchSize,
      (batch) => this.exclusive(() => this.scoreBatch(batch, options)),
      (size) => this.warn(`out of memory while filtering; batch size lowered to ${size}`),
    );
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

  private async scoreBatch(samples: ScoreSample[], options: ScoreOptions): Promise<TextScore[][]> {
    const { imageFeat } = await this.encodeImages(samples);
    const cross = this.crossCache.fetches(0, samples.length);
    const pairs = samples.flatMap((s, image) => s.texts.map((text) => ({ image, text })));
    const dim = this.manifest.imageTextHiddenSize;
    const scores: TextScore[] = [];
    for (const part of chunks(pairs, TEXTS_PER_CALL)) {
      const itm = await this.itmProbabilities(part, cross, options);
      const textFeat = await this.textFeatures(
        part.map((p) => p.text),
        options.maxTextLength,
      );
      part.forEach((p, i) => {
        let cosine = 0;
        for (let d = 0; d < dim; d++)
          cosine += (imageFeat as Float32Array)[p.image * dim + d] * textFeat[i * dim + d];
        scores.push({ itm: itm[i], itc: cosine });
      });
    }
    const out: TextScore[][] = [];
    let next = 0;
    for (const s of samples) {
      out.push(scores.slice(next, next + s.texts.length));
      next += s.texts.length;
    }
    return out;
  }

  private async itmProbabilities(
    pairs: { image: number; text: string }[],
    cross: Record<string, ort.Tensor>,
    options: ScoreOptions,
  ): Promise<number[]> {
    const { ids, mask, length } = this.tokenize(
      pairs.map((p) => p.text),
      options.maxTextLength,
      options.firstToken,
    );
    const feeds: Record<string, ort.Tensor> = {
      [IO.inputIds]: int64(ids, [pairs.length, length]),
      [IO.attentionMask]: int64(mask, [pairs.length, length]),
      [IO.imageIndex]: int64(
        pairs.map((p) => p.image),
        [pairs.length],
      ),
    };
    for (let l = 0; l < this.manifest.text.numLayers; l++) {
      for (const part of ['key', 'value'] as const)
        feeds[kvName('cross', part, l)] = cross[kvName('cross', part, l)];
    }
    const logits = (await this.sessions[GRAPHS.itm].run(feeds))[IO.itmLogits].data as Float32Array;
    // softmax(logits)[1] = 1 / (1 + e^(l0 - l1)), in float64.
    return pairs.map((_, i) => 1 / (1 + Math.exp(logits[2 * i] - logits[2 * i + 1])));
  }

  /** Normalised ITC text features; the unimodal text encoder keeps [CLS] first, as BLIP's ITC does. */
  private async textFeatures(texts: string[], maxTextLength: number): Promise<Float32Array> {
    const { ids, mask, length } = this.tokenize(texts, maxTextLength, 'cls');
    const out = await this.sessions[GRAPHS.itcText].run({
      [IO.inputIds]: int64(ids, [texts.length, length]),
      [IO.attentionMask]: int64(mask, [texts.length, length]),
    });
    return out[IO.textFeat].data as Float32Array;
  }

  /** Token ids padded to the longest text of the call (padding is masked out, so scores do not change). */
  private tokenize(
    texts: string[],
    maxLength: number,
    firstToken: 'enc' | 'cls',
  ): { ids: number[]; mask: number[]; length: number } {
    const encoded = texts.map((t) => encodeForItm(this.tokenizer, t, { maxLength, firstToken }));
    const length = Math.max(...encoded.map((e) => e.inputIds.length));
    const ids: number[] = [];
    const mask: number[] = [];
    for (const e of encoded) {
      const pad = length - e.inputIds.length;
      ids.push(...e.inputIds, ...new Array<number>(pad).fill(this.manifest.specialIds.pad));
      mask.push(...e.attentionMask, ...new Array<number>(pad).fill(0));
    }
    return { ids, mask, length };
  }
}
