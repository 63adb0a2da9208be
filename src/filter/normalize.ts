import { isPyWhitespace } from '../model/runtime/tokenizer.js';

/** The characters BLIP's pre_caption turns into spaces: r"([.!\"()*#:;~])". */
const PRE_CAPTION_PUNCT = new Set(['.', '!', '"', '(', ')', '*', '#', ':', ';', '~']);

/**
 * BLIP's `data/utils.py` pre_caption, the text normalisation the filter was fine-tuned on: lower-case,
 * punctuation above to spaces, runs of two or more whitespace characters (Python's Unicode `\s`) to one
 * space, strip trailing newlines then spaces, keep the first `maxWords` space-separated words.
 * A single tab or newline inside the text survives, exactly as in the original.
 */
export function preCaption(text: string, maxWords = 30): string {
  let replaced = '';
  for (const ch of text.toLowerCase()) replaced += PRE_CAPTION_PUNCT.has(ch) ? ' ' : ch;

  let collapsed = '';
  let run = '';
  for (const ch of replaced) {
    if (isPyWhitespace(ch)) {
      run += ch;
      continue;
    }
    collapsed += Array.from(run).length >= 2 ? ' ' : run;
    run = '';
    collapsed += ch;
  }
  collapsed += Array.from(run).length >= 2 ? ' ' : run;

  const caption = collapsed.replace(/\n+$/, '').replace(/^ +| +$/g, '');
  const words = caption.split(' ');
  return words.length > maxWords ? words.slice(0, maxWords).join(' ') : caption;
}
