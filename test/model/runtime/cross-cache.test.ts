import { describe, expect, it } from 'vitest';
import { CrossCache } from '../../../src/model/runtime/cross-cache.js';

// 2 layers, rows of 2 heads × 3 tokens × 2 dims = 12 floats.
const rowOf = (t: { data: unknown }, r: number) =>
  Array.from((t.data as Float32Array).subarray(r * 12, (r + 1) * 12));

describe('CrossCache', () => {
  it('hands onnxruntime views that write rows in place, and compacts and repeats rows in place', () => {
    const cache = new CrossCache(2, 2, 3, 2);
    cache.reserve(4);
    const fetches = cache.fetches(1, 2);
    expect(fetches['cross_key.0'].dims).toEqual([2, 2, 3, 2]);
    // Write rows 1..2 of layer 1's values through the view, as onnxruntime does.
    (fetches['cross_value.1'].data as Float32Array).set(Array.from({ length: 24 }, (_, i) => i + 1));
    const before = cache.layerTensors(0, 4)[1].value;
    expect(rowOf(before, 0)).toEqual(new Array(12).fill(0));
    expect(rowOf(before, 2)[0]).toBe(13);
    cache.repeatRow(2, 3, 1);
    expect(rowOf(cache.layerTensors(0, 4)[1].value, 3)).toEqual(rowOf(before, 2));
    cache.compact([2, 3]);
    const after = cache.layerTensors(0, 2)[1].value;
    expect(after.dims).toEqual([2, 2, 3, 2]);
    expect(rowOf(after, 0)[0]).toBe(13);
    expect(rowOf(after, 1)[0]).toBe(13);
    // The buffers are the same memory before and after: nothing was reallocated.
    expect((after.data as Float32Array).buffer).toBe((before.data as Float32Array).buffer);
  });

  it('refuses a compaction order that would overwrite rows still needed', () => {
    const cache = new CrossCache(1, 1, 1, 1);
    cache.reserve(3);
    expect(() => cache.compact([2, 1])).toThrow(/increasing/);
  });
});
