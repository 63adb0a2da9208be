import { basename } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { UsageError } from '../errors.js';
import type { RgbImage } from '../io/image.js';
import type { ModelKind } from './config.js';
import { type ModelManifest, readManifest } from './manifest.js';
import { preprocessImage } from './preprocess.js';
import { float32, openSessions, type ResolvedDevice, type RuntimeOptions, releaseAll } from './runtime.js';
import { BertTokenizer } from './tokenizer.js';

export interface EngineOptions extends RuntimeOptions {
  /** Images per model call (default 8). */
  batchSize?: number;
}

/** What a converted model directory gives an engine once loaded. */
export interface LoadedModel {
  manifest: ModelManifest;
  modelId: string;
  device: ResolvedDevice;
  sessions: Record<string, ort.InferenceSession>;
  tokenizer: BertTokenizer;
  batchSize: number;
  warn: (message: string) => void;
}

export async function loadModel(
  modelDir: string,
  kind: ModelKind,
  roles: string[],
  options: EngineOptions,
): Promise<LoadedModel> {
  const manifest = await readManifest(modelDir);
  if (manifest.kind !== kind) throw new UsageError(`${modelDir} is a ${manifest.kind}, not a ${kind}`);
  const tokenizer = await BertTokenizer.fromDir(modelDir, manifest.specialIds);
  const { sessions, device } = await openSessions(modelDir, manifest, roles, options);
  return {
    manifest,
    modelId: manifest.source.name ?? basename(modelDir),
    device,
    sessions,
    tokenizer,
    batchSize: options.batchSize ?? 8,
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
  protected readonly sessions: Record<string, ort.InferenceSession>;
  protected readonly tokenizer: BertTokenizer;
  protected readonly batchSize: number;
  protected readonly warn: (message: string) => void;

  protected constructor(model: LoadedModel) {
    this.manifest = model.manifest;
    this.modelId = model.modelId;
    this.device = model.device;
    this.sessions = model.sessions;
    this.tokenizer = model.tokenizer;
    this.batchSize = model.batchSize;
    this.warn = model.warn;
  }

  /** This model's input tensor for a decoded image (resize, rescale, normalise; CHW). */
  pixels(image: RgbImage): Float32Array {
    return preprocessImage(image, this.manifest.image);
  }

  /** Vision outputs (image_embeds, and image_feat for the filter) and cross_key.{l}/cross_value.{l}. */
  protected async encodeImages(
    samples: readonly { pixels: Float32Array }[],
  ): Promise<{
    vision: ort.InferenceSession.OnnxValueMapType;
    cross: ort.InferenceSession.OnnxValueMapType;
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
    return { vision, cross };
  }

  async close(): Promise<void> {
    await releaseAll(this.sessions);
  }
}
