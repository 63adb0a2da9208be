import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/core/errors.js';
import { Filter } from '../../../src/filter/filter.js';
import { isOutOfMemory, mapBatches } from '../../../src/model/runtime/batching.js';
import { importTinyModels, type TinyModels } from '../../helpers/models.js';

describe('devices', () => {
  let models: TinyModels;
  beforeAll(async () => {
    models = await importTinyModels();
  });
  afterAll(() => models?.dispose());

  it('--device cuda fails with a message that says what is missing (this machine has no CUDA provider)', async () => {
    const err = await Filter.load(models.filter, { device: 'cuda' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect(String((err as Error).message)).toMatch(/cannot run on CUDA device 0/);
    expect(String((err as Error).message)).toMatch(/--device cpu or --device auto/);
  });

  it('--device auto falls back to the CPU and says so', async () => {
    const warnings: string[] = [];
    const filter = await Filter.load(models.filter, { device: 'auto', onWarning: (m) => warnings.push(m) });
    try {
      expect(filter.device.kind).toBe('cpu');
      expect(warnings.join('\n')).toMatch(/CUDA unavailable.*running on the CPU/);
    } finally {
      await filter.close();
    }
  });

  it('rejects an unknown device name', async () => {
    await expect(Filter.load(models.filter, { device: 'tpu' as 'cpu' })).rejects.toThrow(
      /unknown device tpu/,
    );
  });
});

describe('batch-size backoff on out-of-memory', () => {
  it('halves the batch and retries, keeping every result in order', async () => {
    const seen: number[] = [];
    const backoffs: number[] = [];
    const items = Array.from({ length: 10 }, (_, i) => i);
    const out = await mapBatches(
      items,
      8,
      async (batch) => {
        seen.push(batch.length);
        if (batch.length > 3) throw new Error('CUDA failure 2: out of memory ; GPU=0');
        return batch.map((x) => x * 10);
      },
      (size) => backoffs.push(size),
    );
    expect(out).toEqual(items.map((x) => x * 10));
    expect(backoffs).toEqual([4, 2]);
    expect(seen.slice(0, 3)).toEqual([8, 4, 2]);
  });

  it('does not swallow other errors', async () => {
    await expect(mapBatches([1, 2], 2, async () => Promise.reject(new Error('bad input')))).rejects.toThrow(
      'bad input',
    );
    expect(isOutOfMemory(new Error('Failed to allocate memory for requested buffer of size 123'))).toBe(true);
  });
});
