import * as ort from 'onnxruntime-node';
import type { DecodingOptions } from '../core/types.js';
import { IO } from '../model/io-names.js';
import { int64 } from '../model/runtime/runtime.js';
import { captionRng } from './rng.js';

/** One batch for generate_greedy / generate_sample: images, and k decoder rows per image. */
export interface GenerateBatch {
  keys: readonly string[];
  /** The images' pixel tensors concatenated, [images, C, H, W]. */
  pixels: ort.Tensor;
  prompt: readonly number[];
  /** Rows (captions) per image; row r is caption r mod k of image floor(r / k). */
  perImage: number;
}

function scalar(type: ort.Tensor.Type, value: number): ort.Tensor {
  return type === 'float64'
    ? new ort.Tensor('float64', Float64Array.from([value]), [])
    : new ort.Tensor('float32', Float32Array.from([value]), []);
}

/**
 * Row r's draws: the first `steps` numbers of its caption's stream (seed, key, caption index), the
 * t-th for its t-th new token, as decodeRows consumes them; in the graph's sampling type.
 */
function uniforms(batch: GenerateBatch, seed: number, steps: number, type: ort.Tensor.Type): ort.Tensor {
  const rows = batch.keys.length * batch.perImage;
  const u = new Float64Array(rows * steps);
  for (let r = 0; r < rows; r++) {
    const rng = captionRng(seed, batch.keys[Math.floor(r / batch.perImage)], r % batch.perImage);
    for (let t = 0; t < steps; t++) u[r * steps + t] = rng.nextFloat();
  }
  return type === 'float64'
    ? new ort.Tensor('float64', u, [rows, steps])
    : new ort.Tensor('float32', Float32Array.from(u), [rows, steps]);
}

/**
 * The feeds of one whole-graph call. `type` is the graph's sampling type (float64 on CPU/CUDA,
 * float32 on WebGPU); `drawSteps` how many uniforms per row the graph reads (its unrolled steps,
 * or max_new_tokens for a Loop).
 */
export function generateFeeds(
  batch: GenerateBatch,
  o: DecodingOptions,
  vocabSize: number,
  type: ort.Tensor.Type,
  drawSteps: number,
): Record<string, ort.Tensor> {
  const rows = batch.keys.length * batch.perImage;
  const feeds: Record<string, ort.Tensor> = {
    [IO.pixelValues]: batch.pixels,
    [IO.promptIds]: int64(Array.from({ length: rows }, () => batch.prompt).flat(), [
      rows,
      batch.prompt.length,
    ]),
    [IO.maxNewTokens]: int64([Math.max(0, o.maxLength - batch.prompt.length)], []),
    [IO.repetitionPenalty]: scalar(type, o.repetitionPenalty),
    [IO.minLength]: int64([o.minLength], []),
  };
  if (o.strategy === 'nucleus') {
    feeds[IO.uniforms] = uniforms(batch, o.seed, drawSteps, type);
    feeds[IO.temperature] = scalar(type, o.temperature);
    feeds[IO.topK] = int64([o.topK <= 0 || o.topK >= vocabSize ? vocabSize : o.topK], []);
    feeds[IO.topPThreshold] = scalar(type, 1 - o.topP);
  }
  return feeds;
}

/** Each row of `sequences` up to its first end token after the prompt, and within maxLength. */
export function sequencesOf(
  sequences: ort.Tensor,
  promptLength: number,
  maxLength: number,
  eosId: number,
): number[][] {
  const [rows, length] = sequences.dims;
  const data = sequences.data as BigInt64Array;
  return Array.from({ length: rows }, (_, r) => {
    const row = Array.from(data.subarray(r * length, (r + 1) * length), Number).slice(
      0,
      Math.max(maxLength, promptLength),
    );
    const end = row.indexOf(eosId, promptLength);
    return end < 0 ? row : row.slice(0, end + 1);
  });
}
