/**
 * How a batch's texts are cut into ITM and ITC calls. A call pads every text to its longest, and
 * the padding is masked, so the grouping changes the cost and never the scores: texts of similar
 * length share a call. ITM texts also stay with their image (the itm graph takes them
 * image-major, the same number per image, against consecutive rows of cross keys/values).
 */

/** A text of the batch: samples[sample].texts[text]. */
export interface TextRef {
  sample: number;
  text: number;
}

/** One ITM call: cross-attention rows [firstRow, firstRow + rows), `texts` image-major over them. */
export interface ItmCall {
  firstRow: number;
  rows: number;
  texts: TextRef[];
}

export interface ScoringPlan {
  /** The samples whose images are encoded, in row order (samples without texts are skipped). */
  imageOrder: number[];
  itm: ItmCall[];
  /** ITC calls (text-only, so any texts may share one). */
  itc: TextRef[][];
}

/**
 * What one call costs beyond its padded tokens, in tokens: onnxruntime's per-call work and the
 * lower GEMM rate of short calls. It only decides where a length bucket ends.
 */
export const CALL_COST_TOKENS = 32;

interface Item {
  length: number;
  weight: number;
}

/**
 * Cuts items sorted by length (longest first) into consecutive calls of at most `maxWeight`,
 * minimising Σ (weight of the call × its longest length + CALL_COST_TOKENS) by dynamic programming.
 * Returns the start index of each call.
 */
export function lengthBuckets(items: readonly Item[], maxWeight: number): number[] {
  const n = items.length;
  const best = new Array<number>(n + 1).fill(Number.POSITIVE_INFINITY);
  const cut = new Array<number>(n + 1).fill(0);
  best[n] = 0;
  for (let i = n - 1; i >= 0; i--) {
    let weight = 0;
    for (let j = i; j < n; j++) {
      weight += items[j].weight;
      if (weight > maxWeight && j > i) break;
      const cost = weight * items[i].length + CALL_COST_TOKENS + best[j + 1];
      if (cost < best[i]) {
        best[i] = cost;
        cut[i] = j + 1;
      }
    }
  }
  const starts: number[] = [];
  for (let i = 0; i < n; i = cut[i]) starts.push(i);
  return starts;
}

function byLengthDesc<T extends { length: number }>(items: T[]): T[] {
  return items.sort((a, b) => b.length - a.length);
}

function split<T>(items: readonly T[], starts: readonly number[]): T[][] {
  return starts.map((s, i) => items.slice(s, starts[i + 1] ?? items.length));
}

const ref = ({ sample, text }: TextRef): TextRef => ({ sample, text });

/** Texts sorted by length and cut into length buckets of at most `maxTexts`. */
function textBuckets(texts: (TextRef & { length: number })[], maxTexts: number): TextRef[][] {
  const sorted = byLengthDesc(texts.map((t) => ({ ...t, weight: 1 })));
  return split(sorted, lengthBuckets(sorted, maxTexts)).map((part) => part.map(ref));
}

/**
 * The calls for a batch, given the token length of every text (`lengths[sample][text]`) and the
 * most texts one call may hold. Images are grouped by their number of texts k and ordered by their
 * longest text; an image with more texts than a call holds gets calls of its own.
 */
export function planScoring(lengths: readonly (readonly number[])[], maxTexts: number): ScoringPlan {
  const imageOrder: number[] = [];
  const itm: ItmCall[] = [];
  const textsOf = (sample: number) => lengths[sample].map((length, text) => ({ sample, text, length }));
  const images = lengths.map((l, sample) => ({ sample, count: l.length, length: Math.max(0, ...l) }));
  const counts = [...new Set(images.map((i) => i.count))].filter((c) => c > 0).sort((a, b) => a - b);
  for (const count of counts) {
    const group = byLengthDesc(images.filter((i) => i.count === count));
    if (count > maxTexts) {
      for (const { sample } of group) {
        for (const texts of textBuckets(textsOf(sample), maxTexts))
          itm.push({ firstRow: imageOrder.length, rows: 1, texts });
        imageOrder.push(sample);
      }
      continue;
    }
    const starts = lengthBuckets(
      group.map((i) => ({ length: i.length, weight: count })),
      maxTexts,
    );
    for (const part of split(group, starts)) {
      const texts = part.flatMap((i) => textsOf(i.sample).map(ref));
      itm.push({ firstRow: imageOrder.length, rows: part.length, texts });
      imageOrder.push(...part.map((i) => i.sample));
    }
  }
  const itc = textBuckets(
    lengths.flatMap((_, sample) => textsOf(sample)),
    maxTexts,
  );
  return { imageOrder, itm, itc };
}
