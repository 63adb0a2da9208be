import type * as ort from 'onnxruntime-node';
import { kvName } from '../io-names.js';
import type { KvPair } from './cross-cache.js';
import { float32 } from './runtime.js';

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
 * The decoder's self-attention cache: per layer, keys and values [rows, heads, positions, headDim]
 * of every position decoded so far. It starts empty, grows by the decoder's `present_*` outputs
 * each step, and follows row reordering (beam search) and dropping (finished sequences).
 */
export class KvCache {
  private layers: KvPair[];

  constructor(layers: number, rows: number, heads: number, headDim: number) {
    const empty = () => float32(new Float32Array(0), [rows, heads, 0, headDim]);
    this.layers = Array.from({ length: layers }, () => ({ key: empty(), value: empty() }));
  }

  /** The cache as the decoder's `past_*` inputs. */
  feeds(into: Record<string, ort.Tensor>): void {
    this.layers.forEach((p, l) => {
      into[kvName('past', 'key', l)] = p.key;
      into[kvName('past', 'value', l)] = p.value;
    });
  }

  /** Takes the decoder's `present_*` outputs as the cache for the next step. */
  update(outputs: Record<string, ort.Tensor>): void {
    this.layers = this.layers.map((_, l) => ({
      key: outputs[kvName('present', 'key', l)],
      value: outputs[kvName('present', 'value', l)],
    }));
  }

  /** Keeps old rows `rows`, in this order. */
  select(rows: readonly number[]): void {
    this.layers = this.layers.map((p) => ({
      key: selectRows(p.key, rows),
      value: selectRows(p.value, rows),
    }));
  }
}
