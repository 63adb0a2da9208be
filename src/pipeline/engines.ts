import type { Caption, DecodingOptions } from '../captioner/options.js';
import type { TextScore } from '../filter/options.js';
import type { RgbImage } from '../io/image.js';

/**
 * What the pipeline needs of the captioner and the filter (src/captioner/captioner.ts and
 * src/filter/filter.ts implement these); stages depend on this shape, not on ONNX sessions.
 */
export interface CaptionEngine {
  readonly modelId: string;
  pixels(image: RgbImage): Float32Array;
  caption(samples: { key: string; pixels: Float32Array }[], options: DecodingOptions): Promise<Caption[][]>;
}

export interface FilterEngine {
  readonly modelId: string;
  pixels(image: RgbImage): Float32Array;
  score(
    samples: { key: string; pixels: Float32Array; texts: string[] }[],
    options: { firstToken: 'enc' | 'cls'; maxTextLength: number },
  ): Promise<TextScore[][]>;
}
