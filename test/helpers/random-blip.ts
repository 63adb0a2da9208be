/**
 * Small random BLIP checkpoints of arbitrary shape, perturbed so outputs are discriminative (the
 * fixture README's recipe), held in memory so a test can tune a bias before writing them out.
 */
import { join } from 'node:path';
import {
  type BlipDims,
  blipConfigJson,
  blipTensorSpecs,
  initTensor,
  writeCheckpointSideFiles,
} from '../../src/model/convert/random.js';
import { writeSafetensors } from '../../src/model/convert/safetensors.js';
import type { WeightMap } from '../../src/model/tensor.js';

/** The dimensions of a test checkpoint (src/model/random.ts writes the config.json from them). */
export type TinyBlipShape = BlipDims;

export { blipConfigJson };

/** Seeded N(0, 1) stream (mulberry32 + Box–Muller). */
export function normalStream(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

const isNormWeight = (key: string): boolean => /(LayerNorm|layer_norm\d*|post_layernorm)\.weight$/.test(key);
const isNormBias = (key: string): boolean => /(LayerNorm|layer_norm\d*|post_layernorm)\.bias$/.test(key);

/**
 * HF-style init (src/model/random.ts initTensor) plus the fixture's perturbation: LayerNorm weight
 * 1 + N(0, 0.2²), LayerNorm bias N(0, 0.1²), word embeddings += N(0, 1), text positions += N(0, 1.5²),
 * vision position/class += N(0, 0.5²), LM decoder weight = word embeddings + N(0, (3/√H)²), LM bias
 * N(0, 0.2²), ITM head += N(0, (3/√H)²), cross-attention output += N(0, (0.5/√fan_in)²), other
 * matrices += N(0, 1/fan_in), other vectors += N(0, 0.1²).
 * `tiedDecoder` omits the LM decoder weight, as checkpoints relying on weight tying do.
 */
export function perturbedWeights(
  configJson: Record<string, unknown>,
  seed: number,
  options: { tiedDecoder?: boolean } = {},
): WeightMap {
  const textHidden = (configJson.text_config as { hidden_size: number }).hidden_size;
  const next = normalStream(seed);
  const weights: WeightMap = new Map();
  for (const { key, shape } of blipTensorSpecs(configJson)) {
    if (key === 'text_decoder.cls.predictions.decoder.weight') continue; // after the word embeddings
    const data = initTensor(key, shape, seed);
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    let set: number | null = null;
    let std: number;
    if (isNormWeight(key)) [set, std] = [1, 0.2];
    else if (isNormBias(key)) [set, std] = [0, 0.1];
    else if (key.endsWith('embeddings.word_embeddings.weight')) std = 1;
    else if (key.endsWith('embeddings.position_embeddings.weight')) std = 1.5;
    else if (key.startsWith('vision_model.embeddings.') && !key.includes('patch_embedding')) std = 0.5;
    else if (key === 'text_decoder.cls.predictions.bias') [set, std] = [0, 0.2];
    else if (key === 'itm_head.weight') std = 3 / Math.sqrt(textHidden);
    else if (key.endsWith('crossattention.output.dense.weight')) std = 0.5 / Math.sqrt(fanIn);
    else if (shape.length >= 2) std = 1 / Math.sqrt(fanIn);
    else std = 0.1;
    for (let i = 0; i < data.length; i++) data[i] = (set ?? data[i]) + std * next();
    weights.set(key, { shape: [...shape], data });
  }
  const word = weights.get('text_decoder.bert.embeddings.word_embeddings.weight');
  if (word && !options.tiedDecoder) {
    const std = 3 / Math.sqrt(textHidden);
    const data = word.data.map((w) => w + std * next());
    weights.set('text_decoder.cls.predictions.decoder.weight', { shape: [...word.shape], data });
  }
  return weights;
}

/** Write a checkpoint directory as the hub lays it out (config, safetensors, tokenizer, processor). */
export async function writeBlipCheckpoint(
  dir: string,
  configJson: Record<string, unknown>,
  weights: WeightMap,
): Promise<void> {
  await writeCheckpointSideFiles(dir, configJson);
  await writeSafetensors(join(dir, 'model.safetensors'), weights, { format: 'pt' });
}
