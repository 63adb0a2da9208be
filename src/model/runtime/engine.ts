import type * as ort from 'onnxruntime-node';
import { DEFAULT_BATCH_SIZE, DEFAULT_ENGINE } from '../../core/defaults.js';
import { UsageError } from '../../core/errors.js';
import type { RgbImage } from '../../core/types.js';
import type { ModelKind } from '../config.js';
import { GRAPHS, IO } from '../io-names.js';
import { type ModelManifest, modelIdOf, readManifest } from '../manifest.js';
import { checkRunnable } from './cpu.js';
import { CrossCache } from './cross-cache.js';
import { preprocessImage } from './preprocess.js';
import {
  type CountedSession,
  float32,
  ModelSessions,
  type ResolvedDevice,
  type RuntimeOptions,
  resolveDevice,
  type Traffic,
} from './runtime.js';
import { BertTokenizer } from './tokenizer.js';

export interface EngineOptions extends RuntimeOptions {
  /**
   * Decoder rows (images × captions or beams) and ITM images per call (DEFAULT_BATCH_SIZE): the
   * decoder is bound by reading its weights, so it wants many rows at once.
   */
  batchSize?: number;
  /**
   * Images per vision-encoder call (DEFAULT_ENGINE.visionBatchSize). On CPUs larger ViT batches run slower per image
   * (their activations leave the cache), while the decoder wants many rows; so they differ.
   */
  visionBatchSize?: number;
  /**
   * Caption (greedy, nucleus) and score with one graph call per batch: pixels in, token ids or
   * scores out, everything between on the device. Default: per model kind and device,
   * DEFAULT_ENGINE.wholeGraph.
   * Otherwise the engine calls the vision, cross K/V and decoder or ITM/ITC graphs itself.
   */
  wholeGraph?: boolean;
}

/** What a converted model directory gives an engine once loaded. */
export interface LoadedModel {
  manifest: ModelManifest;
  modelId: string;
  device: ResolvedDevice;
  sessions: ModelSessions;
  tokenizer: BertTokenizer;
  batchSize: number;
  visionBatchSize: number;
  wholeGraph: boolean;
  warn: (message: string) => void;
}

export async function loadModel(
  modelDir: string,
  kind: ModelKind,
  options: EngineOptions,
): Promise<LoadedModel> {
  const manifest = await readManifest(modelDir);
  if (manifest.kind !== kind) throw new UsageError(`${modelDir} is a ${manifest.kind}, not a ${kind}`);
  const tokenizer = await BertTokenizer.fromDir(modelDir, manifest.specialIds);
  const device = await resolveDevice(options);
  checkRunnable(modelDir, manifest, device.kind);
  const sessions = new ModelSessions(modelDir, manifest, device, options);
  return {
    manifest,
    modelId: modelIdOf(modelDir, manifest),
    device,
    sessions,
    tokenizer,
    batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
    visionBatchSize: options.visionBatchSize ?? DEFAULT_ENGINE.visionBatchSize,
    wholeGraph: options.wholeGraph ?? DEFAULT_ENGINE.wholeGraph[kind][device.kind],
    warn: options.onWarning ?? ((m: string) => process.stderr.write(`capfilt: ${m}\n`)),
  };
}

/**
 * What the captioner and the filter share: a converted model's sessions, its preprocessing, and
 * the image side (vision encoder, then the cross-attention keys/values of every text layer).
 */
export abstract class BlipEngine {
  readonly manifest: ModelManifest;
  readonly modelId: string;
  readonly device: ResolvedDevice;
  protected readonly sessions: ModelSessions;
  protected readonly tokenizer: BertTokenizer;
  protected readonly batchSize: number;
  protected readonly visionBatchSize: number;
  protected readonly wholeGraph: boolean;
  protected readonly warn: (message: string) => void;
  /** Cross-attention keys/values of the batch in hand, reused from batch to batch. */
  protected readonly crossCache: CrossCache;
  private queue: Promise<unknown> = Promise.resolve();

  protected constructor(model: LoadedModel) {
    this.manifest = model.manifest;
    this.modelId = model.modelId;
    this.device = model.device;
    this.sessions = model.sessions;
    this.tokenizer = model.tokenizer;
    this.batchSize = model.batchSize;
    this.visionBatchSize = model.visionBatchSize;
    this.wholeGraph = model.wholeGraph;
    this.warn = model.warn;
    const t = model.manifest.text;
    this.crossCache = new CrossCache(
      t.numLayers,
      t.numHeads,
      model.manifest.imageTokens,
      t.hiddenSize / t.numHeads,
    );
  }

  /** Bytes passed into onnxruntime and back, and the images they were for, since load. */
  get traffic(): Traffic & { images: number } {
    return { ...this.sessions.traffic, images: this.images };
  }

  /** Images captioned or scored since load (encode() calls not counted). */
  protected images = 0;

  /** The images' pixel tensors as one [images, C, H, W] tensor. */
  protected pixelBatch(samples: readonly { pixels: Float32Array }[]): ort.Tensor {
    const { imageSize, numChannels } = this.manifest.vision;
    const plane = numChannels * imageSize * imageSize;
    const pixels = new Float32Array(samples.length * plane);
    samples.forEach((s, i) => {
      pixels.set(s.pixels, i * plane);
    });
    return float32(pixels, [samples.length, numChannels, imageSize, imageSize]);
  }

  protected session(role: string): Promise<CountedSession> {
    return this.sessions.get(role);
  }

  /** Run `work` alone: batches share the engine's buffers, so calls queue instead of overlapping. */
  protected exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => {});
    return run;
  }

  /** This model's input tensor for a decoded image (resize, rescale, normalise; CHW). */
  pixels(image: RgbImage): Float32Array {
    return preprocessImage(image, this.manifest.image);
  }

  /**
   * The image side of a batch: image_embeds [B*N*Dv] (and the filter's normalised image_feat),
   * with the cross-attention keys/values written into crossCache rows, `rowsPerImage` adjacent
   * rows per image (repeat_interleave, as generate() expands inputs for beams and samples).
   */
  protected async encodeImages(
    samples: readonly { pixels: Float32Array }[],
    rowsPerImage = 1,
  ): Promise<{ imageEmbeds: Float32Array; imageFeat: Float32Array | null }> {
    const { hiddenSize } = this.manifest.vision;
    const embedSize = this.manifest.imageTokens * hiddenSize;
    const featSize = this.manifest.imageTextHiddenSize;
    const imageEmbeds = new Float32Array(samples.length * embedSize);
    const imageFeat = this.manifest.kind === 'filter' ? new Float32Array(samples.length * featSize) : null;
    this.crossCache.reserve(samples.length * rowsPerImage);
    for (let first = 0; first < samples.length; first += this.visionBatchSize) {
      const part = samples.slice(first, first + this.visionBatchSize);
      const vision = await (await this.session(GRAPHS.vision)).run({
        [IO.pixelValues]: this.pixelBatch(part),
      });
      imageEmbeds.set(vision[IO.imageEmbeds].data as Float32Array, first * embedSize);
      imageFeat?.set(vision[IO.imageFeat].data as Float32Array, first * featSize);
      if (rowsPerImage === 1) {
        await (await this.session(GRAPHS.crossKv)).run(
          { [IO.imageEmbeds]: vision[IO.imageEmbeds] },
          this.crossCache.fetches(first, part.length),
        );
        continue;
      }
      const embeds = vision[IO.imageEmbeds].data as Float32Array;
      for (let i = 0; i < part.length; i++) {
        const row = (first + i) * rowsPerImage;
        const one = float32(embeds.subarray(i * embedSize, (i + 1) * embedSize), [
          1,
          this.manifest.imageTokens,
          hiddenSize,
        ]);
        const crossKv = await this.session(GRAPHS.crossKv);
        await crossKv.run({ [IO.imageEmbeds]: one }, this.crossCache.fetches(row, 1));
        this.crossCache.repeatRow(row, row + 1, rowsPerImage - 1);
      }
    }
    return { imageEmbeds, imageFeat };
  }

  async close(): Promise<void> {
    await this.sessions.release();
  }
}
