import type { Caption, DecodingOptions, RgbImage, TextScore } from '../core/types.js';
import type { ImageSpec } from '../model/manifest.js';

/**
 * What the pipeline needs of the captioner and the filter (src/captioner/captioner.ts and
 * src/filter/filter.ts implement these); stages depend on this shape, not on ONNX sessions.
 */
export interface CaptionEngine {
  readonly modelId: string;
  /** How the engine preprocesses images; equal specs let a sample's pixels serve both models. */
  readonly manifest?: { readonly image: ImageSpec };
  pixels(image: RgbImage): Float32Array;
  caption(samples: { key: string; pixels: Float32Array }[], options: DecodingOptions): Promise<Caption[][]>;
}

export interface FilterEngine {
  readonly modelId: string;
  readonly manifest?: { readonly image: ImageSpec };
  pixels(image: RgbImage): Float32Array;
  score(
    samples: { key: string; pixels: Float32Array; texts: string[] }[],
    /** threshold: the run's, near which a filter with a recheck set scores again in fp32. */
    options: { firstToken: 'enc' | 'cls'; maxTextLength: number; threshold?: number },
  ): Promise<TextScore[][]>;
}
