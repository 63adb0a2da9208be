/**
 * How a batch's texts are cut into ITM and ITC calls. A call pads every text to its longest, and
 * the padding is masked, so the grouping changes the cost and never the scores: texts of similar
 * length share a call. An ITM call reads consecutive rows of cross keys/values and takes its
 * texts image-major, the same number per row (the itm graph's contract), so images are encoded
 * in the order their calls read them.
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

/** The most texts per ITM/ITC call: enough to keep the GEMMs busy, few enough to bound activation memory. */
export const MAX_TEXTS_PER_CALL = 64;

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
 * Cuts items into consecutive calls of at most `maxWeight`, minimising
 * Σ (weight of the call × its longest length + CALL_COST_TOKENS) by dynamic programming.
 * Returns the start index of each call.
 */
export function lengthBuckets(items: readonly Item[], maxWeight: number): number[] {
  const n = items.length;
  const best = new Array<number>(n + 1).fill(Number.POSITIVE_INFINITY);
  const cut = new Array<number>(n + 1).fill(0);
  best[n] = 0;
  for (let i = n - 1; i >= 0; i--) {
    let weight = 0;
    let longest = 0;
    for (let j = i; j < n; j++) {
      weight += items[j].weight;
      longest = Math.max(longest, items[j].length);
      if (weight > maxWeight && j > i) break;
      const cost = weight * longest + CALL_COST_TOKENS + best[j + 1];
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
 * ITM calls over rows [first, first + ranked.length): the j-th longest text of every row that has
 * one is scored in calls of one text per row (rows with more texts come first, so those with a
 * j-th text are a prefix), cut into length buckets.
 */
function rankCalls(
  ranked: TextRef[][],
  first: number,
  lengthOf: (r: TextRef) => number,
  maxTexts: number,
): ItmCall[] {
  const calls: ItmCall[] = [];
  for (let j = 0; j < (ranked[0]?.length ?? 0); j++) {
    const rows = ranked.filter((texts) => texts.length > j).map((texts) => texts[j]);
    const items = rows.map((r) => ({ length: lengthOf(r), weight: 1 }));
    for (const part of split(
      rows.map((r, i) => ({ r, i })),
      lengthBuckets(items, maxTexts),
    )) {
      calls.push({ firstRow: first + part[0].i, rows: part.length, texts: part.map((p) => p.r) });
    }
  }
  return calls;
}

/**
 * The calls for a batch, given the token length of every text (`lengths[sample][text]`) and the
 * most texts one call may hold. Images are ordered by their number of texts, then by their longest
 * text; each ITM call takes the j-th longest text of consecutive images, so a long web text does
 * not pad its image's short captions. An image with more texts than a call holds gets calls of
 * its own, its texts image-major on one row.
 */
export function planScoring(lengths: readonly (readonly number[])[], maxTexts: number): ScoringPlan {
  const textsOf = (sample: number) => lengths[sample].map((length, text) => ({ sample, text, length }));
  const images = lengths
    .map((l, sample) => ({ sample, count: l.length, longest: Math.max(0, ...l) }))
    .filter((i) => i.count > 0)
    .sort((a, b) => b.count - a.count || b.longest - a.longest);
  const regular = images.filter((i) => i.count <= maxTexts);
  const large = images.filter((i) => i.count > maxTexts);
  const ranked = regular.map((i) => byLengthDesc(textsOf(i.sample)).map(ref));
  const itm = rankCalls(ranked, 0, (r) => lengths[r.sample][r.text], maxTexts);
  large.forEach((image, i) => {
    for (const texts of textBuckets(textsOf(image.sample), maxTexts))
      itm.push({ firstRow: regular.length + i, rows: 1, texts });
  });
  const itc = textBuckets(
    lengths.flatMap((_, sample) => textsOf(sample)),
    maxTexts,
  );
  return { imageOrder: [...regular, ...large].map((i) => i.sample), itm, itc };
}

/** Token ids and mask of a call, padded to its longest text (padding is masked, so scores do not change). */
export function padTexts(
  encoded: readonly { inputIds: readonly number[]; attentionMask: readonly number[] }[],
  padId: number,
): { ids: number[]; mask: number[]; length: number } {
  const length = Math.max(...encoded.map((e) => e.inputIds.length));
  const ids: number[] = [];
  const mask: number[] = [];
  for (const e of encoded) {
    const pad = length - e.inputIds.length;
    ids.push(...e.inputIds, ...new Array<number>(pad).fill(padId));
    mask.push(...e.attentionMask, ...new Array<number>(pad).fill(0));
  }
  return { ids, mask, length };
}
