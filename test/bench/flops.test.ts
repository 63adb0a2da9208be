import { describe, expect, it } from 'vitest';
import {
  captionFlops,
  crossKvFlops,
  type Dims,
  decoderCallBytes,
  decoderCallFlops,
  itmFlops,
  visionFlops,
} from '../../bench/flops.js';

/** BLIP-base and BLIP-large as their config.json give them (Salesforce/blip-image-captioning-base and -large on the Hugging Face hub). */
function blip(vision: { hidden: number; layers: number }): Dims {
  return {
    vision: {
      hiddenSize: vision.hidden,
      numLayers: vision.layers,
      numHeads: vision.hidden / 64,
      intermediateSize: 4 * vision.hidden,
      imageSize: 384,
      patchSize: 16,
      numChannels: 3,
      layerNormEps: 1e-5,
      hiddenAct: 'gelu',
    },
    text: {
      vocabSize: 30524,
      hiddenSize: 768,
      encoderHiddenSize: vision.hidden,
      numLayers: 12,
      numHeads: 12,
      intermediateSize: 3072,
      maxPositionEmbeddings: 512,
      layerNormEps: 1e-12,
      hiddenAct: 'gelu',
      bosTokenId: 30522,
      sepTokenId: 102,
      padTokenId: 0,
    },
    imageTextHiddenSize: 256,
    imageTokens: 577,
  };
}

const base = blip({ hidden: 768, layers: 12 });
const large = blip({ hidden: 1024, layers: 24 });
const gflop = (f: number) => Number((f / 1e9).toFixed(2));

describe('FLOP formulas against blip.md §7 (computed there independently)', () => {
  it('vision: ViT-B/16 110.97, ViT-L/16 382.13 GFLOP per image', () => {
    expect(gflop(visionFlops(base))).toBe(110.97);
    expect(gflop(visionFlops(large))).toBe(382.13);
  });

  it('cross K/V: 16.34 (base) and 21.78 (large) GFLOP per image', () => {
    expect(gflop(crossKvFlops(base))).toBe(16.34);
    expect(gflop(crossKvFlops(large))).toBe(21.78);
  });

  it('decoder: 0.268 GFLOP per token at position 15; ITM 7.73 GFLOP at 35 tokens, 4.40 at 20', () => {
    expect(Number((decoderCallFlops(base, 1, 14) / 1e9).toFixed(3))).toBe(0.268);
    expect(gflop(itmFlops(base, 35))).toBe(7.73);
    expect(gflop(itmFlops(base, 20))).toBe(4.4);
  });

  it('a caption is its prompt call plus one call per further position', () => {
    const parts = decoderCallFlops(base, 4, 0) + decoderCallFlops(base, 1, 4) + decoderCallFlops(base, 1, 5);
    expect(captionFlops(base, 4, 6)).toBe(parts);
  });

  it('decode reads its fp32 weights (≈ 0.49 GB at base) and 42.5 MB of cross K/V per row', () => {
    const weights = decoderCallBytes(base, 0, 0);
    expect(Math.round(weights / 1e7) / 100).toBe(0.49);
    expect(Math.round((decoderCallBytes(base, 1, 0) - weights) / 1e5) / 10).toBe(42.5);
  });
});
