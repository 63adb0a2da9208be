import type * as ort from 'onnxruntime-node';
import { float32, int64 } from '../model/runtime.js';

/** Keys/values of one attention layer, [rows, heads, length, headDim]. */
export interface KvPair {
  key: ort.Tensor;
  value: ort.Tensor;
}

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
 * The decoder of one batch of sequences: the per-image cross-attention keys/values computed once,
 * the self-attention cache growing by one position per step. Rows can be reordered (beam search) or
 * dropped (finished sequences stop costing work).
 */
export class DecoderRun {
  private past: KvPair[];
  private cross: KvPair[];
  rows: number;

  constructor(
    private readonly session: ort.InferenceSession,
    cross: KvPair[],
    private readonly heads: number,
    private readonly headDim: number,
  ) {
    this.cross = cross;
    this.rows = cross[0].key.dims[0];
    const empty = () => float32(new Float32Array(0), [this.rows, heads, 0, headDim]);
    this.past = cross.map(() => ({ key: empty(), value: empty() }));
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
   * Keep `rows` (old row indices) in this order. `sameImages` says row i still reads the image it
   * read before (beam reordering inside a group), so the large cross-attention cache stays put.
   */
  select(rows: readonly number[], sameImages = false): void {
    this.past = this.past.map((p) => ({ key: selectRows(p.key, rows), value: selectRows(p.value, rows) }));
    if (!sameImages) {
      this.cross = this.cross.map((c) => ({
        key: selectRows(c.key, rows),
        value: selectRows(c.value, rows),
      }));
    }
    this.rows = rows.length;
  }

  get headShape(): [number, number] {
    return [this.heads, this.headDim];
  }
}
