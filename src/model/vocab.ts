import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelError } from '../core/errors.js';

/**
 * vocab.txt, parsed one way for the import (special ids) and the tokenizer (every id), as
 * Hugging Face's load_vocab reads it.
 */

/** vocab.txt lines as Python's readlines() + rstrip('\n') in text mode (universal newlines) see them. */
export function parseVocab(text: string): string[] {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Token → id, as load_vocab builds it: a token that appears twice keeps its last line. */
export function vocabIds(tokens: readonly string[]): Map<string, number> {
  const ids = new Map<string, number>();
  tokens.forEach((token, i) => {
    ids.set(token, i);
  });
  return ids;
}

/** The tokens of `<dir>/vocab.txt`. */
export async function readVocab(dir: string): Promise<string[]> {
  try {
    return parseVocab(await readFile(join(dir, 'vocab.txt'), 'utf8'));
  } catch (err) {
    throw new ModelError(
      `${dir}: no readable vocab.txt (BLIP uses the bert-base-uncased WordPiece vocabulary)`,
      {
        cause: err,
      },
    );
  }
}
