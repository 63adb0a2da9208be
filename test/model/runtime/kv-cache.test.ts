import type * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { KvCache } from '../../../src/model/runtime/kv-cache.js';
import { float32 } from '../../../src/model/runtime/runtime.js';

/** [rows, 1 head, 1 position, 2] with row r filled with r * 10 + layer. */
function present(rows: number, layer: number): ort.Tensor {
  const data = new Float32Array(rows * 2);
  for (let r = 0; r < rows; r++) data.fill(r * 10 + layer, 2 * r, 2 * r + 2);
  return float32(data, [rows, 1, 1, 2]);
}

describe('KvCache', () => {
  it('starts empty, takes the present outputs, and follows row selection', () => {
    const cache = new KvCache(2, 3, 1, 2);
    const feeds: Record<string, ort.Tensor> = {};
    cache.feeds(feeds);
    expect(Object.keys(feeds).sort()).toEqual(['past_key.0', 'past_key.1', 'past_value.0', 'past_value.1']);
    expect(feeds['past_key.0'].dims).toEqual([3, 1, 0, 2]);
    cache.update({
      'present_key.0': present(3, 0),
      'present_value.0': present(3, 0),
      'present_key.1': present(3, 1),
      'present_value.1': present(3, 1),
    });
    cache.select([2, 0]);
    cache.feeds(feeds);
    expect(feeds['past_key.1'].dims).toEqual([2, 1, 1, 2]);
    expect(Array.from(feeds['past_key.1'].data as Float32Array)).toEqual([21, 21, 1, 1]);
    expect(Array.from(feeds['past_value.0'].data as Float32Array)).toEqual([20, 20, 0, 0]);
  });
});
