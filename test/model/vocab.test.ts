import { describe, expect, it } from 'vitest';
import { parseVocab, vocabIds } from '../../src/model/vocab.js';

describe('vocab.txt (one parser for the import and the tokenizer)', () => {
  it('reads lines like Python readlines + rstrip("\\n")', () => {
    expect(parseVocab('a\r\nb\nc\n')).toEqual(['a', 'b', 'c']);
    expect(parseVocab('a\nb')).toEqual(['a', 'b']);
    expect(parseVocab('a\n\nb\n')).toEqual(['a', '', 'b']);
  });

  it('gives a repeated token its last line, as load_vocab does', () => {
    expect(vocabIds(['[PAD]', 'x', '[UNK]', 'x'])).toEqual(
      new Map([
        ['[PAD]', 0],
        ['x', 3],
        ['[UNK]', 2],
      ]),
    );
  });
});
