import type { TextConfig } from '../../config.js';
import type { Blocks } from './blocks.js';

/** The cached keys/values of one self-attention layer, [B, H, P, hd]. */
export interface LayerCache {
  key: string;
  value: string;
}

export interface TextRunOptions {
  /** Prefix of the BERT weights: `text_decoder.bert.` (captioner) or `text_encoder.` (filter). */
  prefix: string;
  /** Positions of the new tokens, int64 [S]. */
  positions: string;
  /** Causal self-attention (decoder) or bidirectional (encoder). */
  causal: boolean;
  /** int32 [B, T] with 0 on padding; encoder only. */
  keyPaddingMask?: string;
  /** Self-attention cache from earlier steps, per layer (decoder only). */
  past?: LayerCache[];
  /** Precomputed cross-attention keys/values per layer, [B, H, N, hd]; absent: text-only (ITC). */
  cross?: LayerCache[];
  /**
   * Several texts per cross-attention row (ITM): the texts come image-major, the same number per
   * image, and their queries attend to their image's keys/values as one longer sequence. `grouped`
   * is the int64 shape [images, -1, D], `ungrouped` the queries' own shape [texts, T, D].
   */
  crossGroups?: { grouped: string; ungrouped: string };
}

/**
 * BlipTextModel (BERT with cross-attention, post-norm): embeddings, then per layer self-attention,
 * cross-attention to the image when given, and the feed-forward block.
 */
export function textTransformer(
  b: Blocks,
  cfg: TextConfig,
  inputIds: string,
  opts: TextRunOptions,
): { hidden: string; present: LayerCache[] } {
  const { g } = b;
  const p = opts.prefix;
  const d = cfg.hiddenSize;
  const eps = cfg.layerNormEps;
  const words = g.op('Gather', [b.param(`${p}embeddings.word_embeddings.weight`), inputIds]);
  const pos = g.op('Gather', [b.param(`${p}embeddings.position_embeddings.weight`), opts.positions]);
  let h = b.layerNorm(g.op('Add', [words, pos]), `${p}embeddings.LayerNorm`, eps);
  const present: LayerCache[] = [];

  for (let i = 0; i < cfg.numLayers; i++) {
    const l = `${p}encoder.layer.${i}.`;
    const [q, k, v] = b.split(
      b.linear(h, [`${l}attention.self.query`, `${l}attention.self.key`, `${l}attention.self.value`]),
      3,
      d,
    );
    const self = b.attention(q, k, v, cfg.numHeads, {
      causal: opts.causal,
      keyPaddingMask: opts.keyPaddingMask,
      pastKey: opts.past?.[i].key,
      pastValue: opts.past?.[i].value,
    });
    if (self.presentKey && self.presentValue)
      present.push({ key: self.presentKey, value: self.presentValue });
    h = b.layerNorm(
      g.op('Add', [b.linear(self.out, [`${l}attention.output.dense`]), h]),
      `${l}attention.output.LayerNorm`,
      eps,
    );
    if (opts.cross) {
      const cq = b.linear(h, [`${l}crossattention.self.query`]);
      // Every BLIP caller passes an all-ones image mask, so cross-attention is unmasked.
      const cross = crossAttention(b, cfg, cq, opts.cross[i], opts.crossGroups);
      h = b.layerNorm(
        g.op('Add', [b.linear(cross, [`${l}crossattention.output.dense`]), h]),
        `${l}crossattention.output.LayerNorm`,
        eps,
      );
    }
    const ff = b.linear(b.gelu(b.linear(h, [`${l}intermediate.dense`])), [`${l}output.dense`]);
    h = b.layerNorm(g.op('Add', [ff, h]), `${l}output.LayerNorm`, eps);
  }
  return { hidden: h, present };
}

/**
 * Cross-attention to precomputed keys/values. It is unmasked and every query row is independent,
 * so with `groups` the queries of an image's texts share one call ([texts, T, D] → [images, k·T, D]
 * and back) instead of copying the image's keys/values once per text.
 */
function crossAttention(
  b: Blocks,
  cfg: TextConfig,
  q: string,
  kv: LayerCache,
  groups: TextRunOptions['crossGroups'],
): string {
  if (!groups) return b.attention(q, kv.key, kv.value, cfg.numHeads, { kvInHeads: true }).out;
  const grouped = b.g.op('Reshape', [q, groups.grouped]);
  const { out } = b.attention(grouped, kv.key, kv.value, cfg.numHeads, { kvInHeads: true });
  return b.g.op('Reshape', [out, groups.ungrouped]);
}

/**
 * Cross-attention keys and values of every text layer from image_embeds, computed once per image:
 * one GEMM over the concatenated projections, then split into [B, H, N, hd] per layer.
 */
export function crossKeyValues(
  b: Blocks,
  cfg: TextConfig,
  imageEmbeds: string,
  prefix: string,
): LayerCache[] {
  const projections: string[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const l = `${prefix}encoder.layer.${i}.crossattention.self.`;
    projections.push(`${l}key`, `${l}value`);
  }
  const all = b.linear(imageEmbeds, projections, `${prefix}cross_kv`);
  const parts = b.split(all, projections.length, cfg.hiddenSize);
  const headDim = cfg.hiddenSize / cfg.numHeads;
  const out: LayerCache[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    out.push({
      key: b.toHeads(parts[2 * i], cfg.numHeads, headDim),
      value: b.toHeads(parts[2 * i + 1], cfg.numHeads, headDim),
    });
  }
  return out;
}

/** int64 positions [P, P+S) where P is the cached length (dim 2 of a past key) and S the new ids. */
export function positionsAfter(b: Blocks, inputIds: string, pastKey?: string): string {
  const { g } = b;
  const seq = g.op('Squeeze', [g.op('Shape', [inputIds], { start: 1, end: 2 })]);
  const start = pastKey
    ? g.op('Squeeze', [g.op('Shape', [pastKey], { start: 2, end: 3 })])
    : g.constInt64([0], []);
  return g.op('Range', [start, g.op('Add', [start, seq]), g.constInt64([1], [])]);
}
