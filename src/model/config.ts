import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelError } from '../core/errors.js';

/** Which of BLIP's two CapFilt models a checkpoint is. */
export type ModelKind = 'captioner' | 'filter';

export interface VisionConfig {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  hiddenAct: string;
}

export interface TextConfig {
  vocabSize: number;
  hiddenSize: number;
  /** Width of the image embeddings the cross-attention reads (the vision hidden size). */
  encoderHiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositionEmbeddings: number;
  layerNormEps: number;
  hiddenAct: string;
  bosTokenId: number;
  sepTokenId: number;
  padTokenId: number;
}

export interface BlipConfig {
  kind: ModelKind;
  architecture: string;
  vision: VisionConfig;
  text: TextConfig;
  /** ITC projection width (image_text_hidden_size). */
  imageTextHiddenSize: number;
}

const ARCHITECTURES: Record<string, ModelKind> = {
  BlipForConditionalGeneration: 'captioner',
  BlipForImageTextRetrieval: 'filter',
};

type Json = Record<string, unknown>;

/**
 * Upper bounds on config sizes, far above any released BLIP (base: 768 wide, 12 layers; large:
 * ViT-L 1024 wide, 24 layers, 4096 MLP; 384-pixel images in 16-pixel patches; a 30524-token
 * vocabulary) and above ViT-g/G scale, yet small enough that a hostile config.json cannot make
 * the converter allocate or loop without end.
 */
const MAX_SIZES: Record<string, number> = {
  hidden_size: 8192,
  encoder_hidden_size: 8192,
  image_text_hidden_size: 8192,
  intermediate_size: 65_536,
  num_hidden_layers: 256,
  num_attention_heads: 256,
  image_size: 4096,
  patch_size: 256,
  num_channels: 16,
  vocab_size: 1_048_576,
  max_position_embeddings: 65_536,
};

function num(obj: Json, key: string, fallback: number): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ModelError(`config.json: ${key} must be a number`);
  return v;
}

/** A size or count: a positive integer (a fractional or zero width would only fail later, obscurely). */
function size(obj: Json, key: string, fallback: number, where = ''): number {
  const v = num(obj, key, fallback);
  if (!Number.isSafeInteger(v) || v <= 0)
    throw new ModelError(`config.json: ${where}${key} must be a positive integer`);
  const max = MAX_SIZES[key];
  if (max !== undefined && v > max) {
    throw new ModelError(
      `config.json: ${where}${key} is ${v}; capfilt converts BLIP models up to ${max} (refusing a size no BLIP has)`,
    );
  }
  return v;
}

/** A token id: a non-negative integer. */
function tokenId(obj: Json, key: string, fallback: number): number {
  const v = num(obj, key, fallback);
  if (!Number.isSafeInteger(v) || v < 0) throw new ModelError(`config.json: ${key} must be a token id`);
  return v;
}

function str(obj: Json, key: string, fallback: string): string {
  const v = obj[key];
  return typeof v === 'string' ? v : fallback;
}

/**
 * Parse a Hugging Face BLIP config.json. Defaults are those of transformers' BlipVisionConfig and
 * BlipTextConfig classes, except that a missing text head count is an error: the class default (8)
 * is wrong for every released checkpoint, whose configs carry 12 explicitly.
 */
export function parseBlipConfig(json: unknown): BlipConfig {
  if (typeof json !== 'object' || json === null) throw new ModelError('config.json is not an object');
  const root = json as Json;
  const archs = Array.isArray(root.architectures) ? (root.architectures as unknown[]) : [];
  const architecture = archs.find(
    (a): a is string => typeof a === 'string' && Object.hasOwn(ARCHITECTURES, a),
  );
  if (!architecture) {
    throw new ModelError(
      `unsupported architecture ${JSON.stringify(archs)}: capfilt converts BlipForConditionalGeneration ` +
        '(captioner) and BlipForImageTextRetrieval (filter)',
    );
  }
  if (root.model_type !== undefined && root.model_type !== 'blip') {
    throw new ModelError(`model_type ${JSON.stringify(root.model_type)} is not "blip"`);
  }
  const v = (root.vision_config ?? {}) as Json;
  const t = (root.text_config ?? {}) as Json;
  if (t.num_attention_heads === undefined) {
    throw new ModelError(
      'config.json: text_config.num_attention_heads is missing (refusing the class default)',
    );
  }
  const vision: VisionConfig = {
    hiddenSize: size(v, 'hidden_size', 768, 'vision_config.'),
    numLayers: size(v, 'num_hidden_layers', 12, 'vision_config.'),
    numHeads: size(v, 'num_attention_heads', 12, 'vision_config.'),
    intermediateSize: size(v, 'intermediate_size', 3072, 'vision_config.'),
    imageSize: size(v, 'image_size', 384, 'vision_config.'),
    patchSize: size(v, 'patch_size', 16, 'vision_config.'),
    numChannels: size(v, 'num_channels', 3, 'vision_config.'),
    layerNormEps: num(v, 'layer_norm_eps', 1e-5),
    hiddenAct: str(v, 'hidden_act', 'gelu'),
  };
  const text: TextConfig = {
    vocabSize: size(t, 'vocab_size', 30524, 'text_config.'),
    hiddenSize: size(t, 'hidden_size', 768, 'text_config.'),
    // transformers' BlipConfig sets it to the vision width whatever config.json says (and
    // blip-image-captioning-large's config lacks it): the cross-attention reads the image embeddings.
    encoderHiddenSize: vision.hiddenSize,
    numLayers: size(t, 'num_hidden_layers', 12, 'text_config.'),
    numHeads: size(t, 'num_attention_heads', 8, 'text_config.'),
    intermediateSize: size(t, 'intermediate_size', 3072, 'text_config.'),
    maxPositionEmbeddings: size(t, 'max_position_embeddings', 512, 'text_config.'),
    layerNormEps: num(t, 'layer_norm_eps', 1e-12),
    hiddenAct: str(t, 'hidden_act', 'gelu'),
    bosTokenId: tokenId(t, 'bos_token_id', 30522),
    sepTokenId: tokenId(t, 'sep_token_id', 102),
    padTokenId: tokenId(t, 'pad_token_id', 0),
  };
  for (const [key, id] of [
    ['bos_token_id', text.bosTokenId],
    ['sep_token_id', text.sepTokenId],
    ['pad_token_id', text.padTokenId],
  ] as const) {
    if (id >= text.vocabSize) {
      throw new ModelError(
        `config.json: text_config.${key} ${id} is outside the ${text.vocabSize}-token vocabulary`,
      );
    }
  }
  for (const [name, c] of [
    ['vision', vision],
    ['text', text],
  ] as const) {
    if (c.hiddenSize % c.numHeads !== 0) {
      throw new ModelError(
        `${name}_config: hidden_size ${c.hiddenSize} is not divisible by ${c.numHeads} heads`,
      );
    }
    if (c.hiddenAct !== 'gelu')
      throw new ModelError(`${name}_config: hidden_act ${c.hiddenAct} is not supported`);
  }
  if (vision.imageSize % vision.patchSize !== 0) {
    throw new ModelError(
      `image_size ${vision.imageSize} is not a multiple of patch_size ${vision.patchSize}`,
    );
  }
  return {
    kind: ARCHITECTURES[architecture],
    architecture,
    vision,
    text,
    imageTextHiddenSize: size(root, 'image_text_hidden_size', 256),
  };
}

export async function readBlipConfig(dir: string): Promise<BlipConfig> {
  let raw: string;
  try {
    raw = await readFile(join(dir, 'config.json'), 'utf8');
  } catch (err) {
    throw new ModelError(`${dir}: no readable config.json`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new ModelError(`${dir}/config.json is not valid JSON`, { cause: err });
  }
  return parseBlipConfig(json);
}

/** Number of image tokens the vision encoder emits: patches plus the class token. */
export function imageTokenCount(v: VisionConfig): number {
  return (v.imageSize / v.patchSize) ** 2 + 1;
}
