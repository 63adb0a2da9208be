import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelError } from '../../core/errors.js';
import { imageTokenCount, type ModelKind, parseBlipConfig } from '../config.js';
import { numel } from '../tensor.js';
import { writeSafetensorsFrom } from './safetensors.js';

export type RandomPreset = 'tiny' | 'base' | 'large';

export interface RandomCheckpointOptions {
  preset: RandomPreset;
  kind: ModelKind;
  /** Directory to write (created if missing; files in it are overwritten). */
  out: string;
  seed?: number;
}

export interface RandomCheckpointResult {
  out: string;
  /** Number of float32 parameters written (tied tensors counted twice, as stored). */
  params: number;
  files: string[];
}

/** The dimensions that make a BLIP config (everything else is the hub's values). */
export interface BlipDims {
  vision: {
    hidden: number;
    layers: number;
    heads: number;
    ffn: number;
    imageSize: number;
    patchSize: number;
    eps?: number;
  };
  text: { hidden: number; layers: number; heads: number; ffn: number; eps?: number; maxPositions?: number };
  imageTextHidden: number;
  projectionDim?: number;
}

/** The Salesforce checkpoints' config.json values on the Hugging Face hub for base/large; tiny is the fixture's config. */
const PRESETS: Record<RandomPreset, BlipDims> = {
  tiny: {
    vision: { hidden: 32, layers: 2, heads: 4, ffn: 64, imageSize: 64, patchSize: 16 },
    text: { hidden: 32, layers: 2, heads: 4, ffn: 64 },
    imageTextHidden: 16,
    projectionDim: 16,
  },
  base: {
    vision: { hidden: 768, layers: 12, heads: 12, ffn: 3072, imageSize: 384, patchSize: 16 },
    text: { hidden: 768, layers: 12, heads: 12, ffn: 3072 },
    imageTextHidden: 256,
    projectionDim: 512,
  },
  large: {
    vision: { hidden: 1024, layers: 24, heads: 16, ffn: 4096, imageSize: 384, patchSize: 16 },
    text: { hidden: 768, layers: 12, heads: 12, ffn: 3072 },
    imageTextHidden: 256,
    projectionDim: 512,
  },
};

const VOCAB_SIZE = 30524;
const MAX_POSITIONS = 512;
const INIT_STD = 0.02;

const ARCHITECTURE: Record<ModelKind, string> = {
  captioner: 'BlipForConditionalGeneration',
  filter: 'BlipForImageTextRetrieval',
};

/** The bert-base-uncased vocabulary shipped with capfilt (same path relative to src/ and dist/). */
export function bundledVocabPath(): string {
  return fileURLToPath(new URL('../../../assets/bert-base-uncased-vocab.txt', import.meta.url));
}

export function randomConfigJson(
  preset: RandomPreset,
  kind: ModelKind,
  seed: number,
): Record<string, unknown> {
  return { ...blipConfigJson(PRESETS[preset], kind), capfilt_random: { preset, seed } };
}

/** A Hugging Face style BLIP config.json of these dimensions (vocabulary and special ids as the hub's). */
export function blipConfigJson(d: BlipDims, kind: ModelKind): Record<string, unknown> {
  const { vision: v, text: t } = d;
  return {
    architectures: [ARCHITECTURE[kind]],
    model_type: 'blip',
    image_text_hidden_size: d.imageTextHidden,
    projection_dim: d.projectionDim ?? d.imageTextHidden,
    initializer_factor: 1.0,
    initializer_range: INIT_STD,
    label_smoothing: 0.0,
    logit_scale_init_value: 2.6592,
    torch_dtype: 'float32',
    text_config: {
      model_type: 'blip_text_model',
      vocab_size: VOCAB_SIZE,
      hidden_size: t.hidden,
      encoder_hidden_size: v.hidden,
      intermediate_size: t.ffn,
      num_hidden_layers: t.layers,
      num_attention_heads: t.heads,
      max_position_embeddings: t.maxPositions ?? MAX_POSITIONS,
      hidden_act: 'gelu',
      layer_norm_eps: t.eps ?? 1e-12,
      bos_token_id: 30522,
      sep_token_id: 102,
      pad_token_id: 0,
      eos_token_id: 2,
      is_decoder: true,
      use_cache: true,
    },
    vision_config: {
      model_type: 'blip_vision_model',
      hidden_size: v.hidden,
      intermediate_size: v.ffn,
      num_hidden_layers: v.layers,
      num_attention_heads: v.heads,
      image_size: v.imageSize,
      patch_size: v.patchSize,
      num_channels: 3,
      hidden_act: 'gelu',
      layer_norm_eps: v.eps ?? 1e-5,
    },
  };
}

export interface TensorSpec {
  key: string;
  shape: number[];
}

/** Every state-dict key and shape of a BLIP checkpoint of this kind, as transformers 4.40's Blip modules name them. */
export function blipTensorSpecs(configJson: unknown): TensorSpec[] {
  const cfg = parseBlipConfig(configJson);
  const { vision: v, text: t } = cfg;
  const specs: TensorSpec[] = [];
  const add = (key: string, ...shape: number[]): void => {
    specs.push({ key, shape });
  };
  const linear = (key: string, outDim: number, inDim: number): void => {
    add(`${key}.weight`, outDim, inDim);
    add(`${key}.bias`, outDim);
  };
  const norm = (key: string, dim: number): void => {
    add(`${key}.weight`, dim);
    add(`${key}.bias`, dim);
  };
  const Dv = v.hiddenSize;
  const tokens = imageTokenCount(v);
  add('vision_model.embeddings.class_embedding', 1, 1, Dv);
  add('vision_model.embeddings.patch_embedding.weight', Dv, v.numChannels, v.patchSize, v.patchSize);
  add('vision_model.embeddings.patch_embedding.bias', Dv);
  add('vision_model.embeddings.position_embedding', 1, tokens, Dv);
  for (let i = 0; i < v.numLayers; i++) {
    const l = `vision_model.encoder.layers.${i}`;
    norm(`${l}.layer_norm1`, Dv);
    linear(`${l}.self_attn.qkv`, 3 * Dv, Dv);
    linear(`${l}.self_attn.projection`, Dv, Dv);
    norm(`${l}.layer_norm2`, Dv);
    linear(`${l}.mlp.fc1`, v.intermediateSize, Dv);
    linear(`${l}.mlp.fc2`, Dv, v.intermediateSize);
  }
  norm('vision_model.post_layernorm', Dv);

  const Dt = t.hiddenSize;
  const pfx = cfg.kind === 'captioner' ? 'text_decoder.bert.' : 'text_encoder.';
  add(`${pfx}embeddings.word_embeddings.weight`, t.vocabSize, Dt);
  add(`${pfx}embeddings.position_embeddings.weight`, t.maxPositionEmbeddings, Dt);
  norm(`${pfx}embeddings.LayerNorm`, Dt);
  for (let i = 0; i < t.numLayers; i++) {
    const l = `${pfx}encoder.layer.${i}`;
    for (const qkv of ['query', 'key', 'value']) linear(`${l}.attention.self.${qkv}`, Dt, Dt);
    linear(`${l}.attention.output.dense`, Dt, Dt);
    norm(`${l}.attention.output.LayerNorm`, Dt);
    linear(`${l}.crossattention.self.query`, Dt, Dt);
    linear(`${l}.crossattention.self.key`, Dt, t.encoderHiddenSize);
    linear(`${l}.crossattention.self.value`, Dt, t.encoderHiddenSize);
    linear(`${l}.crossattention.output.dense`, Dt, Dt);
    norm(`${l}.crossattention.output.LayerNorm`, Dt);
    linear(`${l}.intermediate.dense`, t.intermediateSize, Dt);
    linear(`${l}.output.dense`, Dt, t.intermediateSize);
    norm(`${l}.output.LayerNorm`, Dt);
  }
  if (cfg.kind === 'captioner') {
    linear('text_decoder.cls.predictions.transform.dense', Dt, Dt);
    norm('text_decoder.cls.predictions.transform.LayerNorm', Dt);
    add('text_decoder.cls.predictions.decoder.weight', t.vocabSize, Dt);
    add('text_decoder.cls.predictions.bias', t.vocabSize);
  } else {
    linear('vision_proj', cfg.imageTextHiddenSize, Dv);
    linear('text_proj', cfg.imageTextHiddenSize, Dt);
    linear('itm_head', 2, Dt);
  }
  return specs;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** N(0, std) from mulberry32 + Box–Muller, seeded per tensor so values do not depend on key order. */
function fillNormal(out: Float32Array, seed: number, std: number): void {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = out.length;
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - next(); // (0, 1]: log stays finite
    const u2 = next();
    const r = std * Math.sqrt(-2 * Math.log(u1));
    const th = 2 * Math.PI * u2;
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
}

const isNormWeight = (key: string): boolean => /(LayerNorm|layer_norm\d*|post_layernorm)\.weight$/.test(key);
const isZeroInit = (key: string): boolean =>
  key.endsWith('.bias') || key === 'text_decoder.cls.predictions.bias';

/** HF-style initial value of one tensor: LayerNorm 1/0, biases 0, everything else N(0, 0.02). */
export function initTensor(key: string, shape: readonly number[], seed: number): Float32Array {
  const data = new Float32Array(numel(shape));
  if (isNormWeight(key)) data.fill(1);
  else if (!isZeroInit(key)) {
    fillNormal(data, (fnv1a(key) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0, INIT_STD);
    // nn.Embedding(padding_idx=0) starts with a zero padding row.
    if (key.endsWith('embeddings.word_embeddings.weight')) data.fill(0, 0, shape[1]);
  }
  return data;
}

function preprocessorConfig(imageSize: number): Record<string, unknown> {
  return {
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_processor_type: 'BlipImageProcessor',
    image_std: [0.26862954, 0.26130258, 0.27577711],
    processor_class: 'BlipProcessor',
    resample: 3,
    rescale_factor: 1 / 255,
    size: { height: imageSize, width: imageSize },
  };
}

const SPECIAL_TOKENS: ReadonlyArray<[number, string]> = [
  [0, '[PAD]'],
  [100, '[UNK]'],
  [101, '[CLS]'],
  [102, '[SEP]'],
  [103, '[MASK]'],
  [30522, '[DEC]'],
  [30523, '[ENC]'],
];

function tokenizerConfig(): Record<string, unknown> {
  const decoder: Record<string, unknown> = {};
  for (const [id, content] of SPECIAL_TOKENS) {
    decoder[String(id)] = {
      content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: true,
    };
  }
  return {
    added_tokens_decoder: decoder,
    additional_special_tokens: ['[ENC]'],
    bos_token: '[DEC]',
    clean_up_tokenization_spaces: true,
    cls_token: '[CLS]',
    do_basic_tokenize: true,
    do_lower_case: true,
    mask_token: '[MASK]',
    model_max_length: 512,
    never_split: null,
    pad_token: '[PAD]',
    processor_class: 'BlipProcessor',
    sep_token: '[SEP]',
    strip_accents: null,
    tokenize_chinese_chars: true,
    tokenizer_class: 'BertTokenizer',
    unk_token: '[UNK]',
  };
}

const SPECIAL_TOKENS_MAP = {
  additional_special_tokens: ['[ENC]'],
  bos_token: '[DEC]',
  cls_token: '[CLS]',
  mask_token: '[MASK]',
  pad_token: '[PAD]',
  sep_token: '[SEP]',
  unk_token: '[UNK]',
};

const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

/**
 * Everything of a Hugging Face BLIP checkpoint directory except the weights: config.json, the
 * processor and tokenizer files, and the bundled vocabulary. Returns the names written.
 */
export async function writeCheckpointSideFiles(
  dir: string,
  config: Record<string, unknown>,
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const imageSize = (config.vision_config as { image_size: number }).image_size;
  const files: string[] = [];
  const put = async (name: string, content: string): Promise<void> => {
    await writeFile(join(dir, name), content);
    files.push(name);
  };
  await put('config.json', json(config));
  await put('preprocessor_config.json', json(preprocessorConfig(imageSize)));
  await put('tokenizer_config.json', json(tokenizerConfig()));
  await put('special_tokens_map.json', json(SPECIAL_TOKENS_MAP));
  await put('added_tokens.json', json({ '[DEC]': 30522, '[ENC]': 30523 }));
  await copyFile(bundledVocabPath(), join(dir, 'vocab.txt'));
  files.push('vocab.txt');
  return files;
}

/**
 * Write a randomly initialised BLIP checkpoint in the Hugging Face layout (config.json,
 * model.safetensors, tokenizer and preprocessor files), for benchmarks at real sizes without a
 * download. Tensors are generated and written one at a time.
 */
export async function writeRandomCheckpoint(opts: RandomCheckpointOptions): Promise<RandomCheckpointResult> {
  if (!Object.hasOwn(PRESETS, opts.preset))
    throw new ModelError(`unknown preset ${JSON.stringify(opts.preset)} (tiny, base, large)`);
  if (opts.kind !== 'captioner' && opts.kind !== 'filter') {
    throw new ModelError(`unknown kind ${JSON.stringify(opts.kind)} (captioner, filter)`);
  }
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new ModelError(`seed must be an integer, got ${seed}`);
  const config = randomConfigJson(opts.preset, opts.kind, seed);
  const specs = blipTensorSpecs(config);
  const files = await writeCheckpointSideFiles(opts.out, config);

  // The LM decoder is tied to the word embeddings (HF and original BLIP store equal tensors).
  let wordEmbeddings: Float32Array | undefined;
  const produce = (key: string, shape: readonly number[]): Float32Array => {
    if (key === 'text_decoder.cls.predictions.decoder.weight' && wordEmbeddings) return wordEmbeddings;
    const data = initTensor(key, shape, seed);
    if (key === 'text_decoder.bert.embeddings.word_embeddings.weight') wordEmbeddings = data;
    return data;
  };
  await writeSafetensorsFrom(join(opts.out, 'model.safetensors'), specs, produce, { format: 'pt' });
  files.push('model.safetensors');
  return { out: opts.out, params: specs.reduce((n, s) => n + numel(s.shape), 0), files };
}
