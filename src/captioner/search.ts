import {
  applyMinLength,
  applyRepetitionPenalty,
  argmax,
  logSoftmax,
  type SamplingParams,
  sampleToken,
} from './logits.js';
import type { Rng } from './rng.js';

/** What a search needs from the decoder: one step over all live rows, and row selection. */
export interface StepModel {
  step(tokens: readonly number[][]): Promise<Float32Array>;
  /** Keep old rows `rows`; `crossRows` (increasing) are the image rows they read, 'same' if unchanged. */
  select(rows: readonly number[], crossRows?: readonly number[] | 'same'): void;
}

export interface LengthRules {
  maxLength: number;
  minLength: number;
  eosId: number;
}

/**
 * Greedy decoding (rng null) or sampling (one Rng per row), each row an independent sequence that
 * starts from `prompt`. A row stops at the end token or at maxLength; finished rows are dropped from
 * the batch once enough of them pile up, so they stop costing decoder work.
 */
export async function decodeRows(
  model: StepModel,
  prompt: readonly number[],
  rngs: (Rng | null)[],
  params: SamplingParams & { maxLength: number },
  vocabSize: number,
): Promise<number[][]> {
  const sequences = rngs.map(() => [...prompt]);
  const finished = new Set<number>();
  // live[i] is the sequence fed in model row i; finished rows may linger until a compaction.
  let live = rngs.map((_, i) => i);
  let tokens: number[][] = live.map(() => [...prompt]);
  let length = prompt.length;
  while (length < params.maxLength) {
    const logits = await model.step(tokens);
    live.forEach((row, i) => {
      if (finished.has(row)) return;
      const seq = sequences[row];
      const rowLogits = logits.subarray(i * vocabSize, (i + 1) * vocabSize);
      const rng = rngs[row];
      let next: number;
      if (rng) {
        next = sampleToken(rowLogits, seq, params, rng.nextFloat());
      } else {
        const processed = new Float32Array(rowLogits);
        applyRepetitionPenalty(processed, seq, params.repetitionPenalty);
        applyMinLength(processed, seq.length, params.minLength, params.eosId);
        next = argmax(processed);
      }
      seq.push(next);
      if (next === params.eosId) finished.add(row);
    });
    length += 1;
    const going = live.flatMap((row, i) => (finished.has(row) ? [] : [i]));
    if (going.length === 0) break;
    // Copying the caches costs a little; drop finished rows once they are a quarter of the batch.
    if ((live.length - going.length) * 4 >= live.length) {
      model.select(going);
      live = going.map((i) => live[i]);
    }
    tokens = live.map((row) => [
      finished.has(row) ? params.eosId : sequences[row][sequences[row].length - 1],
    ]);
  }
  return sequences;
}

interface Hypothesis {
  score: number;
  tokens: number[];
}

/** BeamHypotheses of transformers 4.40: the best num_beams finished hypotheses of one input. */
class Hypotheses {
  readonly beams: Hypothesis[] = [];
  worstScore = 1e9;

  constructor(
    private readonly numBeams: number,
    private readonly lengthPenalty: number,
  ) {}

  add(tokens: number[], sumLogprobs: number, length: number): void {
    const score = sumLogprobs / length ** this.lengthPenalty;
    if (this.beams.length < this.numBeams || score > this.worstScore) {
      this.beams.push({ score, tokens });
      if (this.beams.length > this.numBeams) {
        const sorted = this.beams
          .map((b, i) => [b.score, i] as const)
          .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        this.beams.splice(sorted[0][1], 1);
        this.worstScore = sorted[1][0];
      } else {
        this.worstScore = Math.min(score, this.worstScore);
      }
    }
  }

  /** early_stopping=False: done when no live beam can still beat the worst kept hypothesis. */
  isDone(bestSumLogprobs: number, length: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    return this.worstScore >= bestSumLogprobs / length ** this.lengthPenalty;
  }
}

export interface BeamParams extends LengthRules {
  numBeams: number;
  lengthPenalty: number;
  repetitionPenalty: number;
  /** How many hypotheses to return per input (num_return_sequences ≤ numBeams). */
  numReturn: number;
}

interface Candidate {
  score: number;
  token: number;
  beam: number;
}

/**
 * torch.topk over beams × vocab for one input: the best 2·numBeams continuations, processors
 * applied to each beam's log-softmax (what _beam_search keeps: max(2, 1 + #eos) · beams).
 */
function topCandidates(
  logits: Float32Array,
  firstRow: number,
  beams: { tokens: number[][]; scores: number[] },
  p: BeamParams,
  curLength: number,
  vocabSize: number,
): Candidate[] {
  const keep = 2 * p.numBeams;
  const top: Candidate[] = [];
  for (let b = 0; b < p.numBeams; b++) {
    const row = firstRow + b;
    const scores = new Float32Array(logSoftmax(logits.subarray(row * vocabSize, (row + 1) * vocabSize)));
    applyRepetitionPenalty(scores, beams.tokens[row], p.repetitionPenalty);
    applyMinLength(scores, curLength, p.minLength, p.eosId);
    const base = beams.scores[row];
    for (let t = 0; t < vocabSize; t++) {
      const score = Math.fround(scores[t] + base);
      if (top.length === keep && score <= top[keep - 1].score) continue;
      let j = top.length < keep ? top.length : keep - 1;
      if (top.length < keep) top.push({ score, token: t, beam: b });
      while (j > 0 && top[j - 1].score < score) {
        top[j] = top[j - 1];
        j--;
      }
      top[j] = { score, token: t, beam: b };
    }
  }
  return top;
}

/** The live state of a beam search: per model row, its tokens and cumulative log-probability. */
interface Beams {
  tokens: number[][];
  scores: number[];
}

/**
 * BeamSearchScorer.process() for one input: an [SEP] among the best numBeams candidates ends a
 * hypothesis (length counted with the [SEP]: cur_len + 1 - prompt); the best other candidates
 * continue as the next beams. Returns the rows the new beams came from, and whether the input
 * is done.
 */
function processInput(
  top: Candidate[],
  firstRow: number,
  beams: Beams,
  next: Beams,
  hyps: Hypotheses,
  p: BeamParams,
  generated: number,
): { sourceRows: number[]; done: boolean } {
  const sourceRows: number[] = [];
  top.forEach((c, rank) => {
    if (sourceRows.length === p.numBeams) return;
    const row = firstRow + c.beam;
    if (c.token !== p.eosId) {
      next.tokens.push([...beams.tokens[row], c.token]);
      next.scores.push(c.score);
      sourceRows.push(row);
    } else if (rank < p.numBeams) {
      hyps.add([...beams.tokens[row]], c.score, generated + 1);
    }
  });
  return { sourceRows, done: hyps.isDone(top[0].score, generated + 1) };
}

/** finalize(): the best numReturn hypotheses of each input, [SEP] appended below max length. */
function bestHypotheses(hyps: Hypotheses[], p: BeamParams): { tokens: number[]; score: number }[][] {
  return hyps.map((h) => {
    const sorted = [...h.beams].sort((x, y) => x.score - y.score);
    const out: { tokens: number[]; score: number }[] = [];
    for (let j = 0; j < p.numReturn && sorted.length > 0; j++) {
      const best = sorted.pop()!;
      const tokens = best.tokens.length < p.maxLength ? [...best.tokens, p.eosId] : [...best.tokens];
      out.push({ tokens, score: best.score });
    }
    return out;
  });
}

/**
 * Beam search exactly as transformers 4.40's _beam_search + BeamSearchScorer: log-softmax scores,
 * processors on log-probs, top 2·beams candidates per input, finished hypotheses scored by
 * sum logprob / generated length^penalty, where a hypothesis ended by [SEP] counts the [SEP]
 * (process() uses cur_len = input length + 1) and an open beam at max length does not. `model`
 * holds inputs × numBeams rows, beams of an input adjacent. Returns per input the best
 * sequences, with [SEP] appended as finalize() does.
 */
export async function beamSearch(
  model: StepModel,
  prompt: readonly number[],
  inputs: number,
  p: BeamParams,
  vocabSize: number,
): Promise<{ tokens: number[]; score: number }[][]> {
  const k = p.numBeams;
  const hyps = Array.from({ length: inputs }, () => new Hypotheses(k, p.lengthPenalty));
  const done = new Array<boolean>(inputs).fill(false);
  // Inputs still searched, in model order; beam b of the i-th of them is model row i·k + b.
  let liveInputs = Array.from({ length: inputs }, (_, i) => i);
  let beams: Beams = {
    tokens: Array.from({ length: inputs * k }, () => [...prompt]),
    scores: Array.from({ length: inputs * k }, (_, r) => (r % k === 0 ? 0 : -1e9)),
  };
  let feed: number[][] = beams.tokens.map((t) => [...t]);
  let curLength = prompt.length;

  while (true) {
    const logits = await model.step(feed);
    const next: Beams = { tokens: [], scores: [] };
    const sourceRows: number[] = [];
    liveInputs.forEach((input, li) => {
      const top = topCandidates(logits, li * k, beams, p, curLength, vocabSize);
      const r = processInput(top, li * k, beams, next, hyps[input], p, curLength - prompt.length);
      sourceRows.push(...r.sourceRows);
      done[input] = r.done;
    });
    curLength += 1;
    beams = next;
    const stillLive = liveInputs.filter((input) => !done[input]);
    if (stillLive.length === 0 || curLength >= p.maxLength) break;
    if (stillLive.length === liveInputs.length) {
      model.select(sourceRows, 'same');
    } else {
      // Finished inputs leave the batch: their rows stop costing decoder work.
      const keep = liveInputs.flatMap((input, li) =>
        done[input] ? [] : Array.from({ length: k }, (_, b) => li * k + b),
      );
      model.select(
        keep.map((pos) => sourceRows[pos]),
        keep,
      );
      beams = { tokens: keep.map((pos) => beams.tokens[pos]), scores: keep.map((pos) => beams.scores[pos]) };
      liveInputs = stillLive;
    }
    feed = beams.tokens.map((t) => [t[t.length - 1]]);
  }

  // finalize(): open beams of unfinished inputs join their hypotheses, their length not counting a [SEP].
  liveInputs.forEach((input, li) => {
    if (done[input]) return;
    for (let b = 0; b < k; b++) {
      const row = li * k + b;
      hyps[input].add(beams.tokens[row], beams.scores[row], beams.tokens[row].length - prompt.length);
    }
  });
  return bestHypotheses(hyps, p);
}
