import { describe, expect, it } from 'vitest';
import {
  applyMinLength,
  applyRepetitionPenalty,
  applyTopK,
  applyTopP,
  drawToken,
  sampleToken,
  warpedLogits,
} from '../../src/captioner/logits.js';
import { captionRng, Rng } from '../../src/captioner/rng.js';
import { chiSquare, expectedDistribution, NUCLEUS_CASE } from '../helpers/sampling.js';

describe('logit processors (transformers 4.40 semantics)', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen ids, once each', () => {
    const l = new Float32Array([2, -2, 1, 0.5]);
    applyRepetitionPenalty(l, [0, 1, 1, 1], 2);
    expect(Array.from(l)).toEqual([1, -4, 1, 0.5]);
  });

  it('min length bans only the end token, only while the sequence is short', () => {
    const l = new Float32Array([1, 2, 3]);
    applyMinLength(l, 4, 5, 2);
    expect(l[2]).toBe(Number.NEGATIVE_INFINITY);
    const m = new Float32Array([1, 2, 3]);
    applyMinLength(m, 5, 5, 2);
    expect(m[2]).toBe(3);
  });

  it('top-k keeps ties at the k-th value', () => {
    const l = new Float32Array([5, 4, 4, 1, 0]);
    applyTopK(l, 2);
    expect(Array.from(l)).toEqual([5, 4, 4, Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]);
  });

  it('top-p keeps the smallest set whose mass exceeds p, always at least one token', () => {
    // probabilities 0.5, 0.3, 0.15, 0.05
    const l = new Float32Array([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
    applyTopP(l, 0.75);
    expect(l.map((v) => (v === Number.NEGATIVE_INFINITY ? 0 : 1))).toEqual(new Float32Array([1, 1, 0, 0]));
    const wider = new Float32Array([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
    applyTopP(wider, 0.85);
    expect(wider.map((v) => (v === Number.NEGATIVE_INFINITY ? 0 : 1))).toEqual(
      new Float32Array([1, 1, 1, 0]),
    );
    const one = new Float32Array([Math.log(0.9), Math.log(0.1)]);
    applyTopP(one, 0.01);
    expect(one[0]).not.toBe(Number.NEGATIVE_INFINITY);
    expect(one[1]).toBe(Number.NEGATIVE_INFINITY);
  });
});

describe('nucleus sampling draws from the truncated, penalised softmax', () => {
  const { logits, seq, params } = NUCLEUS_CASE;
  const row = new Float32Array(logits);
  const expected = expectedDistribution(logits, seq, params);

  it('matches the expected distribution (chi-square, 20k draws)', () => {
    const draws = 20_000;
    const counts = new Map<number, number>();
    const rng = captionRng(7, 'sample', 0);
    for (let d = 0; d < draws; d++) {
      const t = sampleToken(row, seq, params, rng.nextFloat());
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    for (const t of counts.keys()) expect(expected.has(t), `token ${t} is outside the nucleus`).toBe(true);
    const { chi2, critical } = chiSquare(counts, expected, draws);
    expect(expected.size).toBeGreaterThan(10);
    expect(chi2).toBeLessThan(critical);
  });

  it('a wrong nucleus (no repetition penalty) is detected by the same test', () => {
    const wrong = expectedDistribution(logits, [], { ...params, repetitionPenalty: 1 });
    const differs = [...expected].some(([t, q]) => Math.abs((wrong.get(t) ?? 0) - q) > 0.005);
    expect(differs).toBe(true);
  });

  it('the fast sampler picks exactly what the full-vocabulary pipeline picks', () => {
    const rng = new Rng(new Uint32Array([9, 9, 9, 9]));
    for (let d = 0; d < 2000; d++) {
      const u = rng.nextFloat();
      expect(sampleToken(row, seq, params, u)).toBe(drawToken(warpedLogits(row, seq, params), u));
    }
  });

  it('never draws the end token before min length', () => {
    const rng = captionRng(1, 'k', 0);
    for (let d = 0; d < 2000; d++) expect(sampleToken(row, seq, params, rng.nextFloat())).not.toBe(5);
  });
});

describe('caption random streams', () => {
  it('depend on seed, key and caption index only', () => {
    const a = captionRng(3, 'key-1', 0).nextFloat();
    expect(captionRng(3, 'key-1', 0).nextFloat()).toBe(a);
    expect(captionRng(4, 'key-1', 0).nextFloat()).not.toBe(a);
    expect(captionRng(3, 'key-2', 0).nextFloat()).not.toBe(a);
    expect(captionRng(3, 'key-1', 1).nextFloat()).not.toBe(a);
  });
});
