import { describe, expect, it } from 'vitest';
import {
  applyMinLength,
  applyRepetitionPenalty,
  applyTopK,
  applyTopP,
  drawToken,
  type SamplingParams,
  sampleToken,
  warpedLogits,
} from '../../src/captioner/logits.js';
import { captionRng, Rng } from '../../src/captioner/rng.js';

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

/** An independent oracle: HF's rules written out with descending sorts, from first principles. */
function expectedDistribution(logits: number[], seq: number[], p: SamplingParams): Map<number, number> {
  const v = logits.map((x, i) => {
    let y = x;
    if (p.repetitionPenalty !== 1 && seq.includes(i))
      y = y < 0 ? y * p.repetitionPenalty : y / p.repetitionPenalty;
    if (i === p.eosId && seq.length < p.minLength) y = Number.NEGATIVE_INFINITY;
    return y / p.temperature;
  });
  const sorted = v.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0]);
  const kth = sorted[p.topK - 1][0];
  const topk = sorted.filter(([x]) => x >= kth && x > Number.NEGATIVE_INFINITY);
  const max = topk[0][0];
  const z = topk.reduce((a, [x]) => a + Math.exp(x - max), 0);
  const probs = topk.map(([x, i]) => [i, Math.exp(x - max) / z] as const);
  // Nucleus: most likely first, keep until the mass reaches top_p (the crossing token is kept).
  const kept: (readonly [number, number])[] = [];
  let mass = 0;
  for (const pr of probs) {
    kept.push(pr);
    mass += pr[1];
    if (mass >= p.topP) break;
  }
  const total = kept.reduce((a, [, q]) => a + q, 0);
  return new Map(kept.map(([i, q]) => [i, q / total]));
}

describe('nucleus sampling draws from the truncated, penalised softmax', () => {
  const vocab = 400;
  const gen = new Rng(new Uint32Array([1, 2, 3, 4]));
  const logits = Array.from({ length: vocab }, () => gen.nextFloat() * 6 - 3);
  const seq = [7, 11, 11, 42, 3];
  const params: SamplingParams = {
    repetitionPenalty: 1.1,
    minLength: 10,
    eosId: 5,
    temperature: 1,
    topK: 50,
    topP: 0.9,
  };
  logits[5] = 10; // the end token would dominate if min length did not ban it
  logits[42] = 2.9; // a seen id near the top: the penalty must push it down
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
    let chi2 = 0;
    for (const [t, q] of expected) {
      const e = q * draws;
      const o = counts.get(t) ?? 0;
      chi2 += ((o - e) * (o - e)) / e;
    }
    const df = expected.size - 1;
    // Wilson–Hilferty approximation of the chi-square 99.9 % quantile.
    const z = 3.09;
    const critical = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
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
