import { basename } from 'node:path';
import type * as ort from 'onnxruntime-node';
import type { EngineOptions } from '../captioner/captioner.js';
import { UsageError } from '../errors.js';
import type { RgbImage } from '../io/image.js';
import { chunks, mapBatches } from '../model/batching.js';
import { type ModelManifest, readManifest } from '../model/manifest.js';
import { preprocessImage } from '../model/preprocess.js';
import { float32, int64, openSessions, type ResolvedDevice, releaseAll } from '../model/runtime.js';
import { BertTokenizer, encodeForItm } from '../model/tokenizer.js';
import type { FilterOptions, TextScore } from './options.js';

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
export class Filter {
  private constructor(
    readonly manifest: ModelManifest,
    readonly modelId: string,
    readonly device: ResolvedDevice,
    private readonly sessions: Record<string, ort.InferenceSession>,
    private readonly tokenizer: BertTokenizer,
    private readonly batchSize: number,
    private readonly onWarning: (message: string) => void,
  ) {}

  static async load(modelDir: string, options: EngineOptions = {}): Promise<Filter> {
    const manifest = await readManifest(modelDir);
    if (manifest.kind !== 'filter') throw new UsageError(`${modelDir} is a ${manifest.kind}, not a filter`);
    const tokenizer = await BertTokenizer.fromDir(modelDir, manifest.specialIds);
    const { sessions, device } = await openSessions(
      modelDir,
      manifest,
      ['vision', 'cross_kv', 'itm', 'itc_text'],
      options,
    );
    const warn = options.onWarning ?? ((m: string) => process.stderr.write(`capfilt: ${m}\n`));
    return new Filter(
      manifest,
      manifest.source.name ?? basename(modelDir),
      device,
      sessions,
      tokenizer,
      options.batchSize ?? 8,
      warn,
    );
  }

  pixels(image: RgbImage): Float32Array {
    return preprocessImage(image, this.manifest.image);
  }

  /** ITM match probability and ITC cosine of every text of every sample. */
  async score(samples: readonly ScoreSample[], options: ScoreOptions): Promise<TextScore[][]> {
    if (options.maxTextLength < 2) throw new UsageError('the text length budget must be at least 2 tokens');
    return mapBatches(
      samples,
      this.batchSize,
      (batch) => this.scoreBatch(batch, options),
      (size) => this.onWarning(`out of memory while filtering; batch size lowered to ${size}`),
    );
  }

  /** image_embeds, the normalised ITC image features and the cross-attention cache of a batch. */
  async encode(samples: readonly { pixels: Float32Array }[]): Promise<{
    imageEmbeds: ort.Tensor;
    imageFeat: Float32Array;
    cross: Record<string, ort.Tensor>;
  }> {
    const { imageSize, numChannels } = this.manifest.vision;
    const plane = numChannels * imageSize * imageSize;
    const pixels = new Float32Array(samples.length * plane);
    samples.forEach((s, i) => {
      pixels.set(s.pixels, i * plane);
    });
    const vision = await this.sessions.vision.run({
      pixel_values: float32(pixels, [samples.length, numChannels, imageSize, imageSize]),
    });
    const cross = await this.sessions.cross_kv.run({ image_embeds: vision.image_embeds });
    return { imageEmbeds: vision.image_embeds, imageFeat: vision.image_feat.data as Float32Array, cross };
  }

  private async scoreBatch(samples: ScoreSample[], options: ScoreOptions): Promise<TextScore[][]> {
    const { imageFeat, cross } = await this.encode(samples);
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
        for (let d = 0; d < dim; d++) cosine += imageFeat[p.image * dim + d] * textFeat[i * dim + d];
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
      input_ids: int64(ids, [pairs.length, length]),
      attention_mask: int64(mask, [pairs.length, length]),
      image_index: int64(
        pairs.map((p) => p.image),
        [pairs.length],
      ),
    };
    for (let l = 0; l < this.manifest.text.numLayers; l++) {
      feeds[`cross_key.${l}`] = cross[`cross_key.${l}`];
      feeds[`cross_value.${l}`] = cross[`cross_value.${l}`];
    }
    const logits = (await this.sessions.itm.run(feeds)).itm_logits.data as Float32Array;
    // softmax(logits)[1] = 1 / (1 + e^(l0 - l1)), in float64.
    return pairs.map((_, i) => 1 / (1 + Math.exp(logits[2 * i] - logits[2 * i + 1])));
  }

  /** Normalised ITC text features; the unimodal text encoder keeps [CLS] first, as BLIP's ITC does. */
  private async textFeatures(texts: string[], maxTextLength: number): Promise<Float32Array> {
    const { ids, mask, length } = this.tokenize(texts, maxTextLength, 'cls');
    const out = await this.sessions.itc_text.run({
      input_ids: int64(ids, [texts.length, length]),
      attention_mask: int64(mask, [texts.length, length]),
    });
    return out.text_feat.data as Float32Array;
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

  async close(): Promise<void> {
    await releaseAll(this.sessions);
  }
}
