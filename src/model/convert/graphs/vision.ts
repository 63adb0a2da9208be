import type { VisionConfig } from '../../config.js';
import type { Blocks } from './blocks.js';

/**
 * BLIP's ViT (BlipVisionModel): patch embedding, [CLS] + learned positions, pre-norm encoder
 * layers with fused qkv, post-LayerNorm. Returns image_embeds [B, N, Dv] — what both heads read.
 */
export function visionEncoder(
  b: Blocks,
  cfg: VisionConfig,
  pixelValues: string,
  prefix = 'vision_model.',
): string {
  const { g } = b;
  const d = cfg.hiddenSize;
  const p = cfg.patchSize;
  const patches = g.op(
    'Conv',
    [
      pixelValues,
      b.param(`${prefix}embeddings.patch_embedding.weight`),
      b.param(`${prefix}embeddings.patch_embedding.bias`),
    ],
    { kernel_shape: [p, p], strides: [p, p] },
  );
  // [B, D, g, g] → [B, g*g, D], row-major over (h, w) as torch's flatten(2).transpose(1, 2).
  const flat = g.op('Transpose', [g.op('Reshape', [patches, g.constInt64([0, d, -1])])], { perm: [0, 2, 1] });
  const batch = g.op('Shape', [pixelValues], { start: 0, end: 1 });
  const clsShape = g.op('Concat', [batch, g.constInt64([1, d])], { axis: 0 });
  const cls = g.op('Expand', [b.param(`${prefix}embeddings.class_embedding`), clsShape]);
  let x = g.op('Add', [
    g.op('Concat', [cls, flat], { axis: 1 }),
    b.param(`${prefix}embeddings.position_embedding`),
  ]);

  for (let i = 0; i < cfg.numLayers; i++) {
    const l = `${prefix}encoder.layers.${i}.`;
    const h = b.layerNorm(x, `${l}layer_norm1`, cfg.layerNormEps);
    const [q, k, v] = b.split(b.linear(h, [`${l}self_attn.qkv`]), 3, d);
    const { out } = b.attention(q, k, v, cfg.numHeads);
    x = g.op('Add', [x, b.linear(out, [`${l}self_attn.projection`])]);
    const m = b.layerNorm(x, `${l}layer_norm2`, cfg.layerNormEps);
    x = g.op('Add', [x, b.linear(b.gelu(b.linear(m, [`${l}mlp.fc1`])), [`${l}mlp.fc2`])]);
  }
  return b.layerNorm(x, `${prefix}post_layernorm`, cfg.layerNormEps);
}

/** ITC image side: normalize(vision_proj(image_embeds[:, 0])). */
export function imageFeatures(b: Blocks, imageEmbeds: string): string {
  return b.l2Normalize(b.linear32(b.firstToken(imageEmbeds), ['vision_proj']));
}
