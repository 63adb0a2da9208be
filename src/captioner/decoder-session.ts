import type * as ort from 'onnxruntime-node';
import type { CrossCache, KvPair } from '../model/runtime/cross-cache.js';
import { float32, int64 } from '../model/runtime/runtime.js';

/** Copy rows of a [rows, ...] float tensor, in the given order. */
export function selectRows(t: ort.Tensor, rows: readonly number[]): ort.Tensor {
  const [n, ...rest] = t.dims;
  const src = t.data as Float32Array;
  const width = n === 0 ? 0 : src.length / n;
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => {
    out.set(src.subarray(r * width, (r + 1) * width), i * width);
  });
  return float32(out, [rows.length, ...rest]);
}

/**
 * The decoder of one batch of sequences: the per-image cross-attention keys/values computed once
 * (in a CrossCache), the self-attention cache growing by one position per step. Rows can be
 * reordered (beam search) or dropped (finished sequences stop costing work).
 */
export class DecoderRun {
  private past: KvPair[];
  private cross: KvPair[];

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly cache: CrossCache,
    public rows: number,
  ) {
    this.cross = cache.layerTensors(0, rows);
    const empty = () => float32(new Float32Array(0), [rows, cache.heads, 0, cache.headDim]);
    this.past = this.cross.map(() => ({ key: empty(), value: empty() }));
  }

  /** Feed `tokens` (the same count per row) and return next-token logits, [rows * vocab]. */
  async step(tokens: readonly number[][]): Promise<Float32Array> {
    const width = tokens[0].length;
    const feeds: Record<string, ort.Tensor> = { input_ids: int64(tokens.flat(), [tokens.length, width]) };
    this.past.forEach((p, i) => {
      feeds[`past_key.${i}`] = p.key;
      feeds[`past_value.${i}`] = p.value;
      feeds[`cross_key.${i}`] = this.cross[i].key;
      feeds[`cross_value.${i}`] = this.cross[i].value;
    });
    const out = await this.session.run(feeds);
    this.past = this.past.map((_, i) => ({ key: out[`present_key.${i}`], value: out[`present_value.${i}`] }));
    return out.logits.data as Float32Array;
  }

  /**
   * Continue with old rows `rows`, in this order. `crossRows` says which image row each new row
   * reads (increasing; `'same'` when rows only move between beams of one image, whose
   * cross-attention inputs are identical, so the large cache stays put).
   */
  select(rows: readonly number[], crossRows: readonly number[] | 'same' = rows): void {
    this.past = this.past.map((p) => ({ key: selectRows(p.key, rows), value: selectRows(p.value, rows) }));
    if (crossRows !== 'same') this.cache.compact(crossRows);
    this.rows = rows.length;
    this.cross = this.cache.layerTensors(0, rows.length);
  }
}
