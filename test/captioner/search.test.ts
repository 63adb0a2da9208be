import { describe, expect, it } from 'vitest';
import { type BeamParams, beamSearch, type StepModel } from '../../src/captioner/search.js';

/**
 * A StepModel whose next-token distribution is a function of each row's sequence so far, so a
 * search can be checked against scores worked out by hand (no ONNX session involved).
 */
class ScriptedModel implements StepModel {
  private rows: number[][];
  constructor(
    rows: number,
    private readonly next: (sequence: readonly number[]) => number[],
  ) {
    this.rows = Array.from({ length: rows }, () => []);
  }

  async step(tokens: readonly number[][]): Promise<Float32Array> {
    const out: number[] = [];
    tokens.forEach((t, r) => {
      this.rows[r].push(...t);
      out.push(...this.next(this.rows[r]).map((p) => Math.log(p)));
    });
    return new Float32Array(out);
  }

  select(rows: readonly number[]): void {
    this.rows = rows.map((r) => [...this.rows[r]]);
  }
}

/** A distribution over `vocab` ids from the given probabilities, the rest sharing what is left. */
function dist(vocab: number, given: Record<number, number>): number[] {
  const set = Object.values(given).reduce((a, b) => a + b, 0);
  const others = vocab - Object.keys(given).length;
  return Array.from({ length: vocab }, (_, t) => given[t] ?? Math.max(1e-12, (1 - set) / others));
}

const params = (p: Partial<BeamParams>): BeamParams => ({
  numBeams: 2,
  lengthPenalty: 1,
  repetitionPenalty: 1,
  numReturn: 1,
  maxLength: 4,
  minLength: 0,
  eosId: 3,
  ...p,
});

describe('beamSearch (transformers 4.40 BeamSearchScorer) through its StepModel seam', () => {
  // Vocabulary 0..3, [SEP] = 3, prompt [0]. After the prompt: [SEP] or 1, evenly. After 1: 2 (0.9).
  // After 1 2, or 1 0: [SEP]. So S = "[SEP] at once" and L = "1 2 [SEP]" both finish.
  const vocab = 4;
  const script = (seq: readonly number[]) => {
    if (seq.length === 1) return dist(vocab, { 1: 0.5, 3: 0.5 });
    if (seq.length === 2) return dist(vocab, { 2: 0.9, 3: 1e-9 });
    return dist(vocab, { 3: 1 - 3e-9 });
  };
  const logS = Math.log(0.5);
  const logL = Math.log(0.5) + Math.log(0.9);

  it('scores a finished hypothesis by sum logprob / generated length^penalty, [SEP] counted', async () => {
    const linear = await beamSearch(new ScriptedModel(2, script), [0], 1, params({ numReturn: 2 }), vocab);
    expect(linear[0].map((h) => h.tokens)).toEqual([
      [0, 1, 2, 3],
      [0, 3],
    ]);
    expect(linear[0][0].score).toBeCloseTo(logL / 3, 5);
    expect(linear[0][1].score).toBeCloseTo(logS / 1, 5);
  });

  it('the length penalty decides between short and long: 0 ranks by sum, 1 by mean', async () => {
    const sum = await beamSearch(new ScriptedModel(2, script), [0], 1, params({ lengthPenalty: 0 }), vocab);
    expect(sum[0]).toHaveLength(1);
    expect(sum[0][0].tokens).toEqual([0, 3]);
    expect(sum[0][0].score).toBeCloseTo(logS, 5);
    const mean = await beamSearch(new ScriptedModel(2, script), [0], 1, params({ lengthPenalty: 1 }), vocab);
    expect(mean[0][0].tokens).toEqual([0, 1, 2, 3]);
  });

  // Vocabulary 0..9, [SEP] = 9. After the prompt: 1 and 2 (0.35 each) beat [SEP] (0.3); then
  // every id is equally likely. "[SEP] at once" would score ln 0.3 ≈ -1.20, better than anything
  // longer, but it ranks third among the candidates.
  const wide = 10;
  const ranked = (seq: readonly number[]) =>
    seq.length === 1 ? dist(wide, { 1: 0.35, 2: 0.35, 9: 0.3 }) : dist(wide, {});

  it('takes an ended hypothesis only when [SEP] ranks among the best numBeams candidates', async () => {
    const two = await beamSearch(new ScriptedModel(2, ranked), [0], 1, params({ eosId: 9 }), wide);
    expect(two[0][0].tokens).not.toEqual([0, 9]);
    const three = await beamSearch(
      new ScriptedModel(3, ranked),
      [0],
      1,
      params({ eosId: 9, numBeams: 3 }),
      wide,
    );
    expect(three[0][0].tokens).toEqual([0, 9]);
    expect(three[0][0].score).toBeCloseTo(Math.log(0.3), 5);
  });

  it('an open beam at max length joins without [SEP], its length not counting one', async () => {
    const [best] = (await beamSearch(new ScriptedModel(2, ranked), [0], 1, params({ eosId: 9 }), wide))[0];
    expect(best.tokens).toHaveLength(4);
    expect(best.tokens.at(-1)).not.toBe(9);
    expect(best.score).toBeCloseTo((Math.log(0.35) + 2 * Math.log(0.1)) / 3, 5);
  });

  it('returns numReturn hypotheses per input, best first, for every input of a batch', async () => {
    const results = await beamSearch(new ScriptedModel(4, script), [0], 2, params({ numReturn: 2 }), vocab);
    expect(results).toHaveLength(2);
    for (const r of results) {
      expect(r.map((h) => h.tokens)).toEqual([
        [0, 1, 2, 3],
        [0, 3],
      ]);
      expect(r[0].score).toBeGreaterThan(r[1].score);
    }
  });
});
