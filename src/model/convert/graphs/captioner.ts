import { type BlipConfig, imageTokenCount } from '../../config.js';
import { GRAPHS, IO, kvName } from '../../io-names.js';
import type { WeightMap } from '../../tensor.js';
import type { GraphBuilder } from '../onnx/graph-builder.js';
import type { Blocks } from './blocks.js';
import { crossKeyValues, type LayerCache, positionsAfter, textTransformer } from './text.js';
import { type GraphVariant, startGraph } from './variant.js';
import { imageFeatures, visionEncoder } from './vision.js';

export const DECODER = 'text_decoder.bert.';
const HEAD = 'text_decoder.cls.predictions.';

/** pixel_values [B,3,H,W] → image_embeds [B,N,Dv]. */
export function buildVisionGraph(cfg: BlipConfig, weights: WeightMap, variant: GraphVariant): GraphBuilder {
  const { g, b } = startGraph(GRAPHS.vision, weights, variant);
  const v = cfg.vision;
  const pixels = g.input(IO.pixelValues, 'float32', ['batch', v.numChannels, v.imageSize, v.imageSize]);
  const embeds = visionEncoder(b, v, pixels);
  const n = imageTokenCount(v);
  g.output(embeds, IO.imageEmbeds, 'float32', ['batch', n, v.hiddenSize]);
  if (cfg.kind === 'filter') {
    const feat = imageFeatures(b, embeds);
    g.output(feat, IO.imageFeat, 'float32', ['batch', cfg.imageTextHiddenSize]);
  }
  return g;
}

/** image_embeds → cross_key.{l}, cross_value.{l} [B,H,N,hd] for every text layer. */
export function buildCrossKvGraph(cfg: BlipConfig, weights: WeightMap, variant: GraphVariant): GraphBuilder {
  const { g, b } = startGraph(GRAPHS.crossKv, weights, variant);
  const t = cfg.text;
  const n = imageTokenCount(cfg.vision);
  const embeds = g.input(IO.imageEmbeds, 'float32', ['batch', n, cfg.vision.hiddenSize]);
  const prefix = cfg.kind === 'captioner' ? DECODER : 'text_encoder.';
  const hd = t.hiddenSize / t.numHeads;
  crossKeyValues(b, t, embeds, prefix).forEach((c, i) => {
    g.output(c.key, kvName('cross', 'key', i), 'float32', ['batch', t.numHeads, n, hd]);
    g.output(c.value, kvName('cross', 'value', i), 'float32', ['batch', t.numHeads, n, hd]);
  });
  return g;
}

export function crossInputs(g: GraphBuilder, cfg: BlipConfig, batch: string): LayerCache[] {
  const t = cfg.text;
  const n = imageTokenCount(cfg.vision);
  const hd = t.hiddenSize / t.numHeads;
  return Array.from({ length: t.numLayers }, (_, i) => ({
    key: g.input(kvName('cross', 'key', i), 'float32', [batch, t.numHeads, n, hd]),
    value: g.input(kvName('cross', 'value', i), 'float32', [batch, t.numHeads, n, hd]),
  }));
}

/**
 * One decoding step with a self-attention KV cache: input_ids [B,S] after P cached positions →
 * next-token logits [B,V] of the last position, and present keys/values [B,H,P+S,hd].
 */
export function buildDecoderGraph(cfg: BlipConfig, weights: WeightMap, variant: GraphVariant): GraphBuilder {
  const { g, b } = startGraph(GRAPHS.decoder, weights, variant);
  const t = cfg.text;
  const hd = t.hiddenSize / t.numHeads;
  const ids = g.input(IO.inputIds, 'int64', ['batch', 'new']);
  const past: LayerCache[] = Array.from({ length: t.numLayers }, (_, i) => ({
    key: g.input(kvName('past', 'key', i), 'float32', ['batch', t.numHeads, 'past', hd]),
    value: g.input(kvName('past', 'value', i), 'float32', ['batch', t.numHeads, 'past', hd]),
  }));
  const cross = crossInputs(g, cfg, 'batch');
  const { hidden, present } = textTransformer(b, t, ids, {
    prefix: DECODER,
    positions: positionsAfter(b, ids, past[0].key),
    causal: true,
    past,
    cross,
  });
  const logits = lmHead(b, t.layerNormEps, g.op('Gather', [hidden, g.constInt64([-1], [])], { axis: 1 }));
  g.output(logits, IO.logits, 'float32', ['batch', t.vocabSize]);
  present.forEach((c, i) => {
    g.output(c.key, kvName('present', 'key', i), 'float32', ['batch', t.numHeads, 'total', hd]);
    g.output(c.value, kvName('present', 'value', i), 'float32', ['batch', t.numHeads, 'total', hd]);
  });
  return g;
}

/**
 * BERT's LM head on hidden states [B, D]: dense → GELU → LayerNorm → decoder (tied to the word
 * embeddings in BLIP) → float32 logits [B, V]; the vocabulary projection runs in float32 whatever
 * the compute type.
 */
export function lmHead(b: Blocks, eps: number, hidden: string): string {
  const transformed = b.layerNorm(
    b.gelu(b.linear(hidden, [`${HEAD}transform.dense`])),
    `${HEAD}transform.LayerNorm`,
    eps,
  );
  const weightKey = b.has(`${HEAD}decoder.weight`)
    ? `${HEAD}decoder.weight`
    : `${DECODER}embeddings.word_embeddings.weight`;
  const biasKey = b.has(`${HEAD}bias`) ? `${HEAD}bias` : `${HEAD}decoder.bias`;
  const { g } = b;
  const name = 'lm_head.weight_t';
  if (!g.hasWeight(name)) {
    const w = b.tensor(weightKey);
    const [out, inDim] = w.shape;
    const wt = new Float32Array(inDim * out);
    for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) wt[i * out + o] = w.data[o * inDim + i];
    g.weight(name, [inDim, out], wt);
  }
  const product = g.op('MatMul', [b.float32(transformed), g.weightAs(name, 'float32')]);
  return g.op('Add', [product, b.param(biasKey, 'float32')]);
}
