import { describe, expect, it } from 'vitest';
import { compareScores } from '../../bench/int8-checks.js';

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
