import type * as ort from 'onnxruntime-node';
import { kvName } from '../io-names.js';
import { float32 } from './runtime.js';

/** Keys/values of one attention layer, [rows, heads, length, headDim]. */
export interface KvPair {
  key: ort.Tensor;
  value: ort.Tensor;
}

/**
 * The cross-attention keys/values of every text layer for a batch of rows, in buffers that live as
 * long as the engine. At BLIP-base size they are 42 MB per row; fresh memory costs a page fault per
 * 4 KiB the first time it is written (several ms per MB on the VMs measured), so the buffers are
 * allocated once, written by onnxruntime in place, and compacted in place.
 */
export class CrossCache {
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private capacity = 0;

  constructor(
    readonly layers: number,
    readonly heads: number,
    readonly tokens: number,
    readonly headDim: number,
  ) {}

  get rowSize(): number {
    return this.heads * this.tokens * this.headDim;
  }

  /** Make room for `rows` rows (contents are not kept when growing). */
  reserve(rows: number): void {
    if (rows <= this.capacity) return;
    this.keys = Array.from({ length: this.layers }, () => new Float32Array(rows * this.rowSize));
    this.values = Array.from({ length: this.layers }, () => new Float32Array(rows * this.rowSize));
    this.capacity = rows;
  }

  private view(buf: Float32Array, start: number, count: number): ort.Tensor {
    const size = this.rowSize;
    return float32(buf.subarray(start * size, (start + count) * size), [
      count,
      this.heads,
      this.tokens,
      this.headDim,
    ]);
  }

  /** Layer tensors over rows [start, start + count). */
  layerTensors(start: number, count: number): KvPair[] {
    return this.keys.map((k, l) => ({
      key: this.view(k, start, count),
      value: this.view(this.values[l], start, count),
    }));
  }

  /** onnxruntime outputs (the cross keys/values of every layer) that write rows [start, start + count) in place. */
  fetches(start: number, count: number): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {};
    this.layerTensors(start, count).forEach((p, l) => {
      out[kvName('cross', 'key', l)] = p.key;
      out[kvName('cross', 'value', l)] = p.value;
    });
    return out;
  }

  /** Repeat row `source` into rows [first, first + count). */
  repeatRow(source: number, first: number, count: number): void {
    const size = this.rowSize;
    for (const buf of [...this.keys, ...this.values]) {
      for (let r = first; r < first + count; r++)
        buf.copyWithin(r * size, source * size, (source + 1) * size);
    }
  }

  /** Keep `rows` (strictly increasing old indices) as rows 0..n-1, moving data in place. */
  compact(rows: readonly number[]): void {
    const size = this.rowSize;
    // Moving row r to i <= r front to back never overwrites a row still to be read.
    if (rows.some((r, i) => i > 0 && r <= rows[i - 1]))
      throw new Error('CrossCache.compact needs increasing rows');
    rows.forEach((r, i) => {
      if (r === i) return;
      for (const buf of [...this.keys, ...this.values]) buf.copyWithin(i * size, r * size, (r + 1) * size);
    });
  }
}
