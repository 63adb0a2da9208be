/**
 * The per-step logit pipeline of Hugging Face generate() (transformers 4.40), one row at a time:
 * processors (repetition penalty, min length) then warpers (temperature, top-k, top-p).
 */

/** RepetitionPenaltyLogitsProcessor: every id already in the sequence (prompt included) is penalised once. */
export function applyRepetitionPenalty(
  logits: Float32Array,
  sequence: readonly number[],
  penalty: number,
): void {
  if (penalty === 1) return;
  const seen = new Set(sequence);
  for (const id of seen) {
    const v = logits[id];
    logits[id] = v < 0 ? v * penalty : v / penalty;
  }
}

/** MinLengthLogitsProcessor: the end token is forbidden while the sequence is shorter than minLength. */
export function applyMinLength(logits: Float32Array, length: number, minLength: number, eosId: number): void {
  if (length < minLength) logits[eosId] = Number.NEGATIVE_INFINITY;
}

export function applyTemperature(logits: Float32Array, temperature: number): void {
  if (temperature === 1) return;
  for (let i = 0; i < logits.length; i++) logits[i] /= temperature;
}

/** TopKLogitsWarper: everything strictly below the k-th largest value is removed (ties survive). */
export function applyTopK(logits: Float32Array, topK: number): void {
  if (topK <= 0 || topK >= logits.length) return;
  const kth = kthLargest(logits.length, (i) => logits[i], topK);
  for (let i = 0; i < logits.length; i++) if (logits[i] < kth) logits[i] = Number.NEGATIVE_INFINITY;
}

/**
 * TopPLogitsWarper as transformers 4.40 writes it: sort ascending, drop the tokens whose cumulative
 * probability is <= 1 - top_p; the most likely token always survives.
 */
export function applyTopP(logits: Float32Array, topP: number): void {
  if (topP >= 1) return;
  const alive: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] !== Number.NEGATIVE_INFINITY) alive.push(i);
  const keep = topPSurvivors(
    alive.map((i) => logits[i]),
    topP,
  );
  alive.forEach((id, n) => {
    if (!keep[n]) logits[id] = Number.NEGATIVE_INFINITY;
  });
}

/** Which of `values` (finite logits, any order) survive top-p; index ties break by position. */
export function topPSurvivors(values: readonly number[], topP: number): boolean[] {
  const keep = values.map(() => true);
  if (topP >= 1) return keep;
  const order = values.map((_, n) => n).sort((x, y) => values[x] - values[y] || x - y);
  const probs = softmaxOf(order.map((n) => values[n]));
  let cumulative = 0;
  const threshold = 1 - topP;
  for (let r = 0; r < order.length - 1; r++) {
    cumulative += probs[r];
    if (cumulative <= threshold) keep[order[r]] = false;
    else break;
  }
  return keep;
}

/** Numerically stable softmax in float64. */
export function softmaxOf(values: ArrayLike<number>): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) if (values[i] > max) max = values[i];
  const out = new Float64Array(values.length);
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const e = values[i] === Number.NEGATIVE_INFINITY ? 0 : Math.exp(values[i] - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** log_softmax in float64, as beam search scores candidates. */
export function logSoftmax(logits: Float32Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** The k-th largest of value(0..n-1). */
function kthLargest(n: number, value: (i: number) => number, k: number): number {
  // A bounded min-heap would be faster; k ≤ 50 over ~30k values is cheap enough with a partial sort.
  const top = new Float64Array(k).fill(Number.NEGATIVE_INFINITY);
  for (let i = 0; i < n; i++) {
    const v = value(i);
    if (v <= top[k - 1]) continue;
    let j = k - 1;
    while (j > 0 && top[j - 1] < v) {
      top[j] = top[j - 1];
      j--;
    }
    top[j] = v;
  }
  return top[k - 1];
}

export interface SamplingParams {
  repetitionPenalty: number;
  minLength: number;
  eosId: number;
  temperature: number;
  topK: number;
  topP: number;
}

/** Processors then warpers, in Hugging Face's order, on a copy of one row's logits. */
export function warpedLogits(
  logits: Float32Array,
  sequence: readonly number[],
  p: SamplingParams,
): Float32Array {
  const row = new Float32Array(logits);
  applyRepetitionPenalty(row, sequence, p.repetitionPenalty);
  applyMinLength(row, sequence.length, p.minLength, p.eosId);
  applyTemperature(row, p.temperature);
  applyTopK(row, p.topK);
  applyTopP(row, p.topP);
  return row;
}

/** Draw one id from softmax(row) with a uniform u in [0, 1). */
export function drawToken(row: Float32Array, u: number): number {
  const probs = softmaxOf(row);
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  return last;
}

/**
 * The same distribution as drawToken(warpedLogits(...)), computed on the at most top-k surviving
 * candidates instead of the whole vocabulary (no 30k-float copies or exponentials per step).
 * Falls back to the full path when top-k is off.
 */
export function sampleToken(
  logits: Float32Array,
  sequence: readonly number[],
  p: SamplingParams,
  u: number,
): number {
  if (p.topK <= 0 || p.topK >= logits.length) return drawToken(warpedLogits(logits, sequence, p), u);
  const seen = p.repetitionPenalty === 1 ? null : new Set(sequence);
  const banEos = sequence.length < p.minLength;
  // Float32 arithmetic as the row-wise processors do it, so both paths see identical values.
  const scratch = new Float32Array(1);
  const value = (i: number): number => {
    if (banEos && i === p.eosId) return Number.NEGATIVE_INFINITY;
    let v = logits[i];
    if (seen?.has(i)) {
      scratch[0] = v < 0 ? v * p.repetitionPenalty : v / p.repetitionPenalty;
      v = scratch[0];
    }
    if (p.temperature !== 1) {
      scratch[0] = v / p.temperature;
      v = scratch[0];
    }
    return v;
  };
  const kth = kthLargest(logits.length, value, p.topK);
  const ids: number[] = [];
  const vals: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    const v = value(i);
    if (v >= kth && v !== Number.NEGATIVE_INFINITY) {
      ids.push(i);
      vals.push(v);
    }
  }
  const keep = topPSurvivors(vals, p.topP);
  const alive = ids.filter((_, n) => keep[n]);
  const aliveVals = vals.filter((_, n) => keep[n]);
  const probs = softmaxOf(aliveVals);
  let cumulative = 0;
  for (let n = 0; n < alive.length; n++) {
    cumulative += probs[n];
    if (u < cumulative) return alive[n];
  }
  return alive[alive.length - 1];
}
