import { basename } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { UsageError } from '../errors.js';
import type { RgbImage } from '../io/image.js';
import { mapBatches } from '../model/batching.js';
import { type ModelManifest, readManifest } from '../model/manifest.js';
import { preprocessImage } from '../model/preprocess.js';
import {
  float32,
  openSessions,
  type ResolvedDevice,
  type RuntimeOptions,
  releaseAll,
} from '../model/runtime.js';
import { BertTokenizer } from '../model/tokenizer.js';
import { DecoderRun, type KvPair, selectRows } from './decoder-session.js';
import type { Caption, DecodingOptions } from './options.js';
import { captionRng } from './rng.js';
import { beamSearch, decodeRows } from './search.js';

export interface EngineOptions extends RuntimeOptions {
  /** Images per model call (default 8). */
  batchSize?: number;
}

export interface CaptionSample {
  key: string;
  /** This model's pixel tensor, CHW float32 (see Captioner.pixels). */
  pixels: Float32Array;
}

/**
 * BLIP's captioner (BlipForConditionalGeneration) on onnxruntime: the vision encoder and the
 * cross-attention keys/values run once per image, then the text decoder generates with its
 * self-attention cache.
 */
export class Captioner {
  private constructor(
    readonly manifest: ModelManifest,
    readonly modelId: string,
    readonly device: ResolvedDevice,
    private readonly sessions: Record<string, ort.InferenceSession>,
    private readonly tokenizer: BertTokenizer,
    private readonly batchSize: number,
    private readonly onWarning: (message: string) => void,
  ) {}

  static async load(modelDir: string, options: EngineOptions = {}): Promise<Captioner> {
    const manifest = await readManifest(modelDir);
    if (manifest.kind !== 'captioner') {
      throw new UsageError(`${modelDir} is a ${manifest.kind}, not a captioner`);
    }
    const tokenizer = await BertTokenizer.fromDir(modelDir, manifest.specialIds);
    const { sessions, device } = await openSessions(
      modelDir,
      manifest,
      ['vision', 'cross_kv', 'decoder'],
      options,
    );
    const warn = options.onWarning ?? ((m: string) => process.stderr.write(`capfilt: ${m}\n`));
    return new Captioner(
      manifest,
      manifest.source.name ?? basename(modelDir),
      device,
      sessions,
      tokenizer,
      options.batchSize ?? 8,
      warn,
    );
  }

  /** This model's input tensor for a decoded image (resize, rescale, normalise; CHW). */
  pixels(image: RgbImage): Float32Array {
    return preprocessImage(image, this.manifest.image);
  }

  /** The decoder's starting ids: [DEC] then the prompt's word pieces (no [SEP]), as BLIP builds them. */
  promptIds(prompt: string): number[] {
    if (prompt === '') return [this.manifest.specialIds.dec];
    const ids = this.tokenizer.encode(prompt, { addSpecialTokens: true });
    ids[0] = this.manifest.specialIds.dec;
    return ids.slice(0, -1);
  }

  /** The caption text: the decoded sequence without special tokens and without the prompt. */
  captionText(tokenIds: readonly number[], promptIds: readonly number[]): string {
    const full = this.tokenizer.decode(tokenIds, { skipSpecialTokens: true });
    const prompt = this.tokenizer.decode(promptIds, { skipSpecialTokens: true });
    return full.startsWith(prompt) ? full.slice(prompt.length).trim() : full.trim();
  }

  /** numCaptions captions per sample; a caption depends only on (seed, key, caption index). */
  async caption(samples: readonly CaptionSample[], options: DecodingOptions): Promise<Caption[][]> {
    validate(options);
    return mapBatches(
      samples,
      this.batchSize,
      (batch) => this.captionBatch(batch, options),
      (size) => this.onWarning(`out of memory while captioning; batch size lowered to ${size}`),
    );
  }

  /** image_embeds and the cross-attention cache of a batch of images. */
  async encode(samples: readonly CaptionSample[]): Promise<{ imageEmbeds: ort.Tensor; cross: KvPair[] }> {
    const { imageSize, numChannels } = this.manifest.vision;
    const plane = numChannels * imageSize * imageSize;
    const pixels = new Float32Array(samples.length * plane);
    samples.forEach((s, i) => {
      pixels.set(s.pixels, i * plane);
    });
    const vision = await this.sessions.vision.run({
      pixel_values: float32(pixels, [samples.length, numChannels, imageSize, imageSize]),
    });
    const kv = await this.sessions.cross_kv.run({ image_embeds: vision.image_embeds });
    const cross = Array.from({ length: this.manifest.text.numLayers }, (_, l) => ({
      key: kv[`cross_key.${l}`],
      value: kv[`cross_value.${l}`],
    }));
    return { imageEmbeds: vision.image_embeds, cross };
  }

  private async captionBatch(samples: CaptionSample[], o: DecodingOptions): Promise<Caption[][]> {
    const { cross } = await this.encode(samples);
    const t = this.manifest.text;
    const prompt = this.promptIds(o.prompt);
    const perImage = o.strategy === 'beam' ? o.numBeams : o.numCaptions;
    // Row r reads image floor(r / perImage): repeat_interleave, as generate() expands inputs.
    const rows = samples.flatMap((_, i) => Array.from({ length: perImage }, () => i));
    const expanded =
      perImage === 1
        ? cross
        : cross.map((c) => ({ key: selectRows(c.key, rows), value: selectRows(c.value, rows) }));
    const run = new DecoderRun(this.sessions.decoder, expanded, t.numHeads, t.hiddenSize / t.numHeads);
    const eosId = this.manifest.specialIds.sep;
    let sequences: number[][][];
    if (o.strategy === 'beam') {
      const results = await beamSearch(
        run,
        prompt,
        samples.length,
        {
          numBeams: o.numBeams,
          lengthPenalty: 1,
          repetitionPenalty: o.repetitionPenalty,
          numReturn: o.numCaptions,
          maxLength: o.maxLength,
          minLength: o.minLength,
          eosId,
        },
        t.vocabSize,
      );
      sequences = results.map((r) => r.map((h) => h.tokens));
    } else {
      const rngs = rows.map((image, r) =>
        o.strategy === 'nucleus' ? captionRng(o.seed, samples[image].key, r % perImage) : null,
      );
      const flat = await decodeRows(run, prompt, rngs, { ...o, eosId, maxLength: o.maxLength }, t.vocabSize);
      sequences = samples.map((_, i) => flat.slice(i * perImage, (i + 1) * perImage));
    }
    return sequences.map((perSample) =>
      perSample.map((tokenIds) => ({ text: this.captionText(tokenIds, prompt), tokenIds })),
    );
  }

  async close(): Promise<void> {
    await releaseAll(this.sessions);
  }
}

function validate(o: DecodingOptions): void {
  if (o.maxLength < 1) throw new UsageError('--max-length must be at least 1');
  if (o.numCaptions < 1) throw new UsageError('--num-captions must be at least 1');
  if (o.strategy === 'beam' && (o.numBeams < 2 || o.numCaptions > o.numBeams)) {
    throw new UsageError('beam search needs --num-beams >= 2 and --num-captions <= --num-beams');
  }
  if (!(o.topP > 0 && o.topP <= 1)) throw new UsageError('--top-p must be in (0, 1]');
  if (o.temperature <= 0) throw new UsageError('temperature must be positive');
}
