import { describe, expect, it } from 'vitest';
import { compareScores, wilsonInterval } from '../../bench/int8-checks.js';

describe('compareScores', () => {
  it('counts flips at the threshold and the fp32 scores that int8 could have flipped', () => {
    const fp32 = [
      [
        { itm: 0.9, itc: 0.1 },
        { itm: 0.505, itc: 0.2 },
      ],
      [{ itm: 0.498, itc: 0.3 }],
    ];
    const int8 = [
      [
        { itm: 0.89, itc: 0.1 },
        { itm: 0.495, itc: 0.25 },
      ],
      [{ itm: 0.499, itc: 0.3 }],
    ];
    const c = compareScores(fp32, int8, 0.5);
    expect(c.texts).toBe(3);
    expect(c.agree).toBe(2);
    expect(c.itmMaxDelta).toBeCloseTo(0.01, 10);
    expect(c.itcMaxDelta).toBeCloseTo(0.05, 10);
    // 0.505 and 0.498 lie within 0.01 of 0.5; 0.9 does not.
    expect(c.nearThreshold).toBe(2);
    expect(c.within001).toBe(2);
    // The one flip: fp32 0.505 → int8 0.495.
    expect(c.flipMaxDistance).toBeCloseTo(0.005, 10);
  });
});

describe('wilsonInterval', () => {
  it('gives the closed forms at the edges: 0 of n → [0, z²/(n+z²)], n of n → [n/(n+z²), 1]', () => {
    const z2 = 1.96 * 1.96;
    const [lo0, hi0] = wilsonInterval(0, 10);
    expect(lo0).toBe(0);
    expect(hi0).toBeCloseTo(z2 / (10 + z2), 12);
    const [lo1, hi1] = wilsonInterval(10, 10);
    expect(lo1).toBeCloseTo(10 / (10 + z2), 12);
    expect(hi1).toBe(1);
  });

  it('is not symmetric near 1 and narrows with n', () => {
    const [lo, hi] = wilsonInterval(306, 312);
    expect(lo).toBeCloseTo(0.9587, 4);
    expect(hi).toBeCloseTo(0.9912, 4);
    const [lo10, hi10] = wilsonInterval(3060, 3120);
    expect(hi10 - lo10).toBeLessThan((hi - lo) / 3);
  });
});
