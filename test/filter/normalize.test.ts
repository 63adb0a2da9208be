import { describe, expect, it } from 'vitest';
import { preCaption } from '../../src/filter/normalize.js';

describe('preCaption (BLIP data/utils.py pre_caption)', () => {
  it('lower-cases and turns BLIP punctuation into spaces, collapsing the runs', () => {
    expect(preCaption('A Dog (running) on the BEACH!!!')).toBe('a dog running on the beach');
    expect(preCaption('"Quoted": yes; no~ #tag *star*')).toBe('quoted yes no tag star');
    expect(preCaption('3.14 is pi.')).toBe('3 14 is pi');
  });

  it('keeps punctuation that pre_caption keeps', () => {
    expect(preCaption("don't stop, believing? a-b/c 'x' [y] {z} @home $5 %")).toBe(
      "don't stop, believing? a-b/c 'x' [y] {z} @home $5 %",
    );
  });

  it('collapses only runs of two or more whitespace characters', () => {
    expect(preCaption('a  b\t\tc')).toBe('a b c');
    // A single tab or newline is not a run: the original keeps it.
    expect(preCaption('a\tb\nc')).toBe('a\tb\nc');
    // Unicode whitespace counts (Python's \s): NBSP + space, ideographic space pairs.
    expect(preCaption('a\u00a0 b\u3000\u3000c')).toBe('a b c');
    // Python's \s also has the C0 separators and NEL, which JS's \s lacks.
    expect(preCaption('x\x1c\x1dy')).toBe('x y');
    expect(preCaption('x\x85 y')).toBe('x y');
    // Zero-width space is not whitespace in Python.
    expect(preCaption('a\u200b\u200bb')).toBe('a\u200b\u200bb');
  });

  it('strips trailing newlines and surrounding spaces', () => {
    expect(preCaption('  hello world.  ')).toBe('hello world');
    expect(preCaption('hello\n')).toBe('hello');
    expect(preCaption('.hello.')).toBe('hello');
    expect(preCaption('hello\n ')).toBe('hello');
    expect(preCaption(' hello\n')).toBe('hello');
    expect(preCaption('')).toBe('');
    expect(preCaption('...')).toBe('');
  });

  it('keeps the first maxWords words (30 by default)', () => {
    const words = Array.from({ length: 40 }, (_, i) => `w${i}`);
    expect(preCaption(words.join(' '))).toBe(words.slice(0, 30).join(' '));
    expect(preCaption(words.join(' '), 5)).toBe('w0 w1 w2 w3 w4');
    expect(preCaption('one two three', 3)).toBe('one two three');
    // Words are split on single spaces, so a kept tab joins two "words" into one.
    expect(preCaption('a\tb c d', 2)).toBe('a\tb c');
  });

  it('lower-cases with full Unicode rules', () => {
    expect(preCaption('ÉCOLE ΟΔΟΣ')).toBe('école οδος');
  });
});
