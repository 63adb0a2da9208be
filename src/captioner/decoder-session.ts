import type * as ort from 'onnxruntime-node';
import { IO, kvName } from '../model/io-names.js';
import type { CrossCache, KvPair } from '../model/runtime/cross-cache.js';
import { KvCache } from '../model/runtime/kv-cache.js';
import { type CountedSession, int64 } from '../model/runtime/runtime.js';

/**
 * The decoder of one batch of sequences: the per-image cross-attention keys/values computed once
 * (in a CrossCache), the self-attention cache (a KvCache) growing by one position per step. Rows
 * can be reordered (beam search) or dropped (finished sequences stop costing work).
 */
export class DecoderRun {
  private readonly past: KvCache;
  private cross: KvPair[];

  constructor(
    private readonly session: CountedSession,
    private readonly cache: CrossCache,
    public rows: number,
  ) {
    this.cross = cache.layerTensors(0, rows);
    this.past = new KvCache(cache.layers, rows, cache.heads, cache.headDim);
  }

  /** Feed `tokens` (the same count per row) and return next-token logits, [rows * vocab]. */
  async step(tokens: readonly number[][]): Promise<Float32Array> {
    const width = tokens[0].length;
    const feeds: Record<string, ort.Tensor> = { [IO.inputIds]: int64(tokens.flat(), [tokens.length, width]) };
    this.past.feeds(feeds);
    this.cross.forEach((c, l) => {
      feeds[kvName('cross', 'key', l)] = c.key;
      feeds[kvName('cross', 'value', l)] = c.value;
    });
    const out = await this.session.run(feeds);
    this.past.update(out);
    return out[IO.logits].data as Float32Array;
  }

  /**
   * Continue with old rows `rows`, in this order. `crossRows` says which image row each new row
   * reads (increasing; `'same'` when rows only move between beams of one image, whose
   * cross-attention inputs are identical, so the large cache stays put).
   */
  select(rows: readonly number[], crossRows: readonly number[] | 'same' = rows): void {
    this.past.select(rows);
    if (crossRows !== 'same') this.cache.compact(crossRows);
    this.rows = rows.length;
    this.cross = this.cache.layerTensors(0, rows.length);
  }
}
