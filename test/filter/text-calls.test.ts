import { describe, expect, it } from 'vitest';
import { CALL_COST_TOKENS, lengthBuckets, planScoring, type TextRef } from '../../src/filter/text-calls.js';

const key = (r: TextRef) => `${r.sample}:${r.text}`;

/** Every text of `lengths` exactly once. */
function allTexts(lengths: number[][]): string[] {
  return lengths.flatMap((l, sample) => l.map((_, text) => key({ sample, text }))).sort();
}

describe('lengthBuckets', () => {
  it('keeps one call when the lengths are equal and it fits', () => {
    expect(
      lengthBuckets(
        Array.from({ length: 10 }, () => ({ length: 20, weight: 1 })),
        64,
      ),
    ).toEqual([0]);
  });

  it('cuts where padding would cost more than a call', () => {
    const long = Array.from({ length: 16 }, () => ({ length: 35, weight: 1 }));
    const short = Array.from({ length: 16 }, () => ({ length: 10, weight: 1 }));
    // One call: 32 × 35 tokens; two: 16 × 35 + 16 × 10 + one more call.
    expect(16 * 25).toBeGreaterThan(CALL_COST_TOKENS);
    expect(lengthBuckets([...long, ...short], 64)).toEqual([0, 16]);
  });

  it('does not cut for a little padding', () => {
    const items = [
      { length: 12, weight: 1 },
      { length: 11, weight: 1 },
    ];
    expect(lengthBuckets(items, 64)).toEqual([0]);
  });

  it('never puts more than the maximum weight in a call', () => {
    const items = Array.from({ length: 50 }, () => ({ length: 8, weight: 3 }));
    const starts = lengthBuckets(items, 64);
    starts.forEach((s, i) => {
      expect(((starts[i + 1] ?? items.length) - s) * 3).toBeLessThanOrEqual(64);
    });
  });
});

describe('planScoring', () => {
  const lengths = [[30, 8], [9, 7], [12], [], [35, 6, 6], [10, 11]];

  it('scores every text once in ITM and once in ITC, and skips images without texts', () => {
    const plan = planScoring(lengths, 64);
    expect(plan.itm.flatMap((c) => c.texts.map(key)).sort()).toEqual(allTexts(lengths));
    expect(plan.itc.flat().map(key).sort()).toEqual(allTexts(lengths));
    expect([...plan.imageOrder].sort()).toEqual([0, 1, 2, 4, 5]);
  });

  it('gives each ITM call consecutive rows, the same number of texts per row, image-major', () => {
    const plan = planScoring(lengths, 64);
    for (const call of plan.itm) {
      const k = call.texts.length / call.rows;
      expect(Number.isInteger(k)).toBe(true);
      for (let r = 0; r < call.rows; r++) {
        const sample = plan.imageOrder[call.firstRow + r];
        expect(call.texts.slice(r * k, (r + 1) * k).map((t) => t.sample)).toEqual(new Array(k).fill(sample));
      }
    }
  });

  it('orders images of the same text count by their longest text', () => {
    const plan = planScoring(
      [
        [5, 5],
        [30, 3],
        [12, 12],
      ],
      64,
    );
    expect(plan.imageOrder).toEqual([1, 2, 0]);
  });

  it("does not pad an image's short caption to its long web text", () => {
    const lengths = [
      [33, 8],
      [30, 9],
      [31, 7],
    ];
    const plan = planScoring(lengths, 64);
    for (const call of plan.itm) {
      const ls = call.texts.map((t) => lengths[t.sample][t.text]);
      expect(Math.max(...ls) - Math.min(...ls), JSON.stringify(ls)).toBeLessThanOrEqual(3);
    }
  });

  it('sorts ITC texts by length into buckets', () => {
    const plan = planScoring([Array.from({ length: 20 }, (_, i) => (i % 2 ? 35 : 6))], 64);
    expect(plan.itc.map((c) => c.length)).toEqual([10, 10]);
  });

  it('gives an image with more texts than a call holds calls of its own on one row', () => {
    const many = Array.from({ length: 10 }, (_, i) => 5 + i);
    const plan = planScoring([[7, 7], many], 4);
    const own = plan.itm.filter((c) => c.texts.some((t) => t.sample === 1));
    expect(own.length).toBeGreaterThanOrEqual(3);
    for (const call of own) {
      expect(call.rows).toBe(1);
      expect(call.texts.length).toBeLessThanOrEqual(4);
      expect(plan.imageOrder[call.firstRow]).toBe(1);
    }
    expect(plan.itm.flatMap((c) => c.texts.map(key)).sort()).toEqual(allTexts([[7, 7], many]));
  });
});
