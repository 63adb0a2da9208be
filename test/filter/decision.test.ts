import { describe, expect, it } from 'vitest';
import { CAPFILT_FILTER } from '../../src/core/defaults.js';
import { type DecisionInput, decideTexts } from '../../src/filter/decision.js';

const s = (text: string, itm: number) => ({ text, score: { itm, itc: 0.1 } });
const base = { threshold: 0.5, consider: 'both' as const, keepTop: 0 };

describe('decideTexts', () => {
  it('keeps texts strictly above the threshold; equal is dropped', () => {
    const input: DecisionInput = {
      web: s('web', 0.5),
      synthetic: [s('c0', 0.5000001), s('c1', 0.49), s('c2', 0.9)],
    };
    expect(decideTexts(input, base)).toEqual({
      webKept: false,
      syntheticKept: [true, false, true],
      texts: ['c0', 'c2'],
    });
  });

  it('uses CapFilt defaults (threshold 0.5, both kinds, no top-k)', () => {
    const d = decideTexts({ web: s('web', 0.51), synthetic: [s('c0', 0.2)] }, CAPFILT_FILTER);
    expect(d).toEqual({ webKept: true, syntheticKept: [false], texts: ['web'] });
  });

  it('lists web first, then captions in order', () => {
    const d = decideTexts({ web: s('web', 0.6), synthetic: [s('c0', 0.99), s('c1', 0.7)] }, base);
    expect(d.texts).toEqual(['web', 'c0', 'c1']);
  });

  it('only keeps the considered kind', () => {
    const input: DecisionInput = { web: s('web', 0.9), synthetic: [s('c0', 0.9), s('c1', 0.1)] };
    expect(decideTexts(input, { ...base, consider: 'web' })).toEqual({
      webKept: true,
      syntheticKept: [false, false],
      texts: ['web'],
    });
    expect(decideTexts(input, { ...base, consider: 'synthetic' })).toEqual({
      webKept: false,
      syntheticKept: [true, false],
      texts: ['c0'],
    });
  });

  it('keepTop keeps the best by ITM, output still in web-then-caption order', () => {
    const input: DecisionInput = {
      web: s('web', 0.6),
      synthetic: [s('c0', 0.7), s('c1', 0.95), s('c2', 0.8)],
    };
    expect(decideTexts(input, { ...base, keepTop: 2 })).toEqual({
      webKept: false,
      syntheticKept: [false, true, true],
      texts: ['c1', 'c2'],
    });
    expect(decideTexts(input, { ...base, keepTop: 10 }).texts).toEqual(['web', 'c0', 'c1', 'c2']);
  });

  it('keepTop breaks ties toward the web text, then earlier captions', () => {
    const input: DecisionInput = { web: s('web', 0.8), synthetic: [s('c0', 0.8), s('c1', 0.8)] };
    expect(decideTexts(input, { ...base, keepTop: 1 }).texts).toEqual(['web']);
    expect(decideTexts(input, { ...base, keepTop: 2 }).texts).toEqual(['web', 'c0']);
    const noWeb = decideTexts({ web: null, synthetic: input.synthetic }, { ...base, keepTop: 1 });
    expect(noWeb).toEqual({ webKept: false, syntheticKept: [true, false], texts: ['c0'] });
  });

  it('keepTop applies after the threshold, never reviving failed texts', () => {
    const input: DecisionInput = { web: s('web', 0.1), synthetic: [s('c0', 0.2)] };
    expect(decideTexts(input, { ...base, keepTop: 1 })).toEqual({
      webKept: false,
      syntheticKept: [false],
      texts: [],
    });
  });

  it('handles no web text, no captions, NaN scores and other thresholds', () => {
    expect(decideTexts({ web: null, synthetic: [] }, base)).toEqual({
      webKept: false,
      syntheticKept: [],
      texts: [],
    });
    expect(decideTexts({ web: s('web', Number.NaN), synthetic: [s('c0', Number.NaN)] }, base).texts).toEqual(
      [],
    );
    expect(decideTexts({ web: s('web', 0.05), synthetic: [] }, { ...base, threshold: 0 }).webKept).toBe(true);
    expect(decideTexts({ web: s('web', 0), synthetic: [] }, { ...base, threshold: 0 }).webKept).toBe(false);
  });

  it('rejects a bad keepTop', () => {
    expect(() => decideTexts({ web: null, synthetic: [] }, { ...base, keepTop: -1 })).toThrow(RangeError);
    expect(() => decideTexts({ web: null, synthetic: [] }, { ...base, keepTop: 1.5 })).toThrow(RangeError);
  });
});
