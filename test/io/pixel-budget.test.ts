import pMap from 'p-map';
import { describe, expect, it } from 'vitest';
import { withDecodedImage } from '../../src/io/image.js';
import { PixelBudget } from '../../src/io/pixel-budget.js';
import { makeImage } from './fixtures.js';

describe('PixelBudget', () => {
  it('grants up to its capacity, then in arrival order as pixels are released', async () => {
    const budget = new PixelBudget(10);
    const order: string[] = [];
    const a = await budget.acquire(6);
    const noted = (name: string) => (release: () => void) => {
      order.push(name);
      return release;
    };
    const b = budget.acquire(6).then(noted('b'));
    // Would fit now, but waits behind b: a large image is never starved by small ones.
    const c = budget.acquire(3).then(noted('c'));
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual([]);
    expect(budget.inUse).toBe(6);
    a();
    a(); // a second release gives nothing back twice
    const releaseB = await b;
    const releaseC = await c;
    expect(order).toEqual(['b', 'c']);
    expect(budget.inUse).toBe(9);
    releaseB();
    releaseC();
    expect(budget.inUse).toBe(0);
    expect(budget.peak).toBe(9);
  });

  it('grants an amount larger than the whole budget alone, never refusing it', async () => {
    const budget = new PixelBudget(100);
    const small = await budget.acquire(1);
    let granted = false;
    const huge = budget.acquire(1_000_000).then((release) => {
      granted = true;
      return release;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(granted).toBe(false);
    small();
    (await huge)();
    expect(budget.peak).toBe(100);
    expect(() => new PixelBudget(0)).toThrow(RangeError);
  });
});

describe('withDecodedImage under a pixel budget (real decodes by sharp)', () => {
  it('holds each image from before its decode until its use is done, never more than the budget', async () => {
    // 1000×1000: a megapixel each; the budget fits two of them.
    const png = await makeImage('png', [30, 160, 90], 1000);
    const budget = new PixelBudget(2_000_000);
    let inUse = 0;
    let mostInUse = 0;
    const sizes = await pMap(
      Array.from({ length: 12 }, (_, i) => `k${i}`),
      (key) =>
        withDecodedImage(
          png,
          key,
          {},
          async (image) => {
            inUse++;
            mostInUse = Math.max(mostInUse, inUse);
            expect(budget.inUse).toBeLessThanOrEqual(2_000_000);
            await new Promise((r) => setTimeout(r, 5));
            inUse--;
            return image.data.length;
          },
          budget,
        ),
      { concurrency: 16 },
    );
    expect(sizes).toEqual(Array(12).fill(3_000_000));
    expect(budget.peak).toBe(2_000_000);
    expect(mostInUse).toBe(2);
    expect(budget.inUse).toBe(0);
  });

  it('gives the pixels back when the decode or the use fails', async () => {
    const budget = new PixelBudget(5_000_000);
    const png = await makeImage('png', [30, 160, 90], 1000);
    const broken = Buffer.concat([png.subarray(0, 100), Buffer.alloc(2000)]);
    await expect(withDecodedImage(broken, 'bad', {}, (i) => i, budget)).rejects.toThrow();
    await expect(
      withDecodedImage(
        png,
        'k',
        {},
        () => {
          throw new Error('use failed');
        },
        budget,
      ),
    ).rejects.toThrow('use failed');
    await new Promise((r) => setTimeout(r, 10));
    expect(budget.inUse).toBe(0);
  });
});
