import type { FilterOptions, TextScore } from '../core/types.js';

export interface ScoredText {
  text: string;
  score: TextScore;
}

export interface DecisionInput {
  /** The image's web text, or null when the pair has none (or it was rejected). */
  web: ScoredText | null;
  /** The captioner's synthetic captions, in generation order. */
  synthetic: ScoredText[];
}

export interface Decision {
  webKept: boolean;
  /** Parallel to input.synthetic. */
  syntheticKept: boolean[];
  /** The kept texts: the web text first, then synthetic captions in their order. */
  texts: string[];
}

export type DecisionOptions = Pick<FilterOptions, 'threshold' | 'consider' | 'keepTop'>;

/**
 * CapFilt's filter decision: a text survives iff its ITM match probability is strictly above the
 * threshold and its kind is considered; with keepTop > 0 only the keepTop best by ITM survive (ties go to
 * the web text, then to earlier captions). NaN scores never pass.
 */
export function decideTexts(input: DecisionInput, options: DecisionOptions): Decision {
  const { threshold, consider, keepTop } = options;
  if (!Number.isInteger(keepTop) || keepTop < 0)
    throw new RangeError(`keepTop must be a non-negative integer, got ${keepTop}`);
  const webConsidered = consider === 'web' || consider === 'both';
  const synConsidered = consider === 'synthetic' || consider === 'both';

  // Candidates in tie-break order: web as -1, captions by index.
  const candidates: { index: number; itm: number }[] = [];
  if (input.web && webConsidered && input.web.score.itm > threshold) {
    candidates.push({ index: -1, itm: input.web.score.itm });
  }
  if (synConsidered) {
    input.synthetic.forEach((s, index) => {
      if (s.score.itm > threshold) candidates.push({ index, itm: s.score.itm });
    });
  }
  // Array.prototype.sort is stable, so equal scores keep the tie-break order above.
  const kept = keepTop > 0 ? candidates.sort((a, b) => b.itm - a.itm).slice(0, keepTop) : candidates;
  const keptSet = new Set(kept.map((c) => c.index));

  const webKept = input.web !== null && keptSet.has(-1);
  const syntheticKept = input.synthetic.map((_, i) => keptSet.has(i));
  const texts: string[] = [];
  if (webKept && input.web) texts.push(input.web.text);
  input.synthetic.forEach((s, i) => {
    if (syntheticKept[i]) texts.push(s.text);
  });
  return { webKept, syntheticKept, texts };
}
