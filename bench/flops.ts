import type { ModelManifest } from '../src/model/manifest.js';

/**
 * The arithmetic of each CapFilt stage, from a converted model's dimensions (bench/README.md
 * writes the formulas out). FLOPs = 2 × the multiply-accumulates of the matrix products: linear
 * layers, attention scores QKᵀ and weighted sums AV, the patch convolution. LayerNorm, softmax,
 * GELU, biases, residual adds and copies are left out (O(tokens·D), under 1 % at BLIP sizes).
 * Attention is counted dense over the length a call runs: pass the padded length for the work
 * executed, each text's own length for the useful work.
 */
export type Dims = Pick<ModelManifest, 'vision' | 'text' | 'imageTextHiddenSize' | 'imageTokens'>;

/** Vision encoder, per image: patch conv + Lv × (qkv, proj, fc1, fc2, QKᵀ, AV). */
export function visionFlops(d: Dims): number {
  const { hiddenSize: D, intermediateSize: I, numLayers: L, patchSize: P, numChannels: C } = d.vision;
  const N = d.imageTokens;
  return 2 * (N - 1) * D * C * P * P + L * (2 * N * D * (4 * D + 2 * I) + 4 * N * N * D);
}

/** Cross-attention keys and values of every text layer, per image. */
export function crossKvFlops(d: Dims): number {
  const { hiddenSize: Dt, numLayers: L, encoderHiddenSize: De } = d.text;
  return L * 2 * 2 * d.imageTokens * De * Dt;
}

/** One decoder call for one row: `s` new tokens after `p` cached ones, logits of the last position. */
export function decoderCallFlops(d: Dims, s: number, p: number): number {
  const { hiddenSize: D, intermediateSize: I, numLayers: L, vocabSize: V } = d.text;
  // self q,k,v,o (4D²) + cross q,o (2D²) + FFN (2DI), per token; attention over P+S and N keys.
  const layer =
    s * (2 * D * 4 * D + 2 * D * 2 * D + 4 * D * I) + 4 * D * s * (p + s) + 4 * D * s * d.imageTokens;
  return L * layer + 2 * D * D + 2 * D * V;
}

/** A caption of one row: the prompt in one call, then one call per token up to `total` positions. */
export function captionFlops(d: Dims, prompt: number, total: number): number {
  let f = decoderCallFlops(d, prompt, 0);
  for (let p = prompt; p < total; p++) f += decoderCallFlops(d, 1, p);
  return f;
}

/** ITM, per text of `t` tokens (its image's cross keys/values precomputed). */
export function itmFlops(d: Dims, t: number): number {
  const { hiddenSize: D, intermediateSize: I, numLayers: L } = d.text;
  return L * (t * (12 * D * D + 4 * D * I) + 4 * t * t * D + 4 * t * d.imageTokens * D) + 4 * D;
}

/** ITC text encoder, per text of `t` tokens (no cross-attention). */
export function itcTextFlops(d: Dims, t: number): number {
  const { hiddenSize: D, intermediateSize: I, numLayers: L } = d.text;
  return L * (t * (8 * D * D + 4 * D * I) + 4 * t * t * D) + 2 * D * d.imageTextHiddenSize;
}

/**
 * Bytes one decoder call must read at least: every weight matrix once (`weightBytes` per element:
 * 4 for fp32) and, per row, the cross keys/values (Lt·2·N·Dt floats) and the self-attention cache
 * so far (Lt·2·p·Dt floats). The decoder does ~2 FLOPs per weight per row, far below what a core
 * computes per byte it reads, so memory bandwidth bounds it, not the GEMM ceiling.
 */
export function decoderCallBytes(d: Dims, rows: number, p: number, weightBytes = 4): number {
  const { hiddenSize: D, intermediateSize: I, numLayers: L, vocabSize: V } = d.text;
  const weights = L * (6 * D * D + 2 * D * I) + D * D + D * V;
  return weights * weightBytes + rows * L * 2 * D * (d.imageTokens + p) * 4;
}

/** Bytes read by a whole caption pass of `rows` rows (prompt call, then one call per token). */
export function captionBytes(d: Dims, rows: number, prompt: number, total: number, weightBytes = 4): number {
  let b = decoderCallBytes(d, rows, 0, weightBytes);
  for (let p = prompt; p < total; p++) b += decoderCallBytes(d, rows, p, weightBytes);
  return b;
}

/** GFLOP of captioning images: vision + cross K/V per image, and each caption (`lengths`: ids incl. prompt). */
export function captionWorkGflop(
  d: Dims,
  images: number,
  prompt: number,
  lengths: readonly number[],
): number {
  const decode = lengths.reduce((a, total) => a + captionFlops(d, prompt, total), 0);
  return (images * (visionFlops(d) + crossKvFlops(d)) + decode) / 1e9;
}

/** GFLOP of filtering images: vision + cross K/V per image, ITM and ITC text per text (`lengths` in tokens). */
export function filterWorkGflop(d: Dims, images: number, lengths: readonly number[]): number {
  const texts = lengths.reduce((a, t) => a + itmFlops(d, t) + itcTextFlops(d, t), 0);
  return (images * (visionFlops(d) + crossKvFlops(d)) + texts) / 1e9;
}
