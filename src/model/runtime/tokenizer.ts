import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelError } from '../../core/errors.js';
import type { SpecialIds } from '../manifest.js';
import { readVocab, vocabIds } from '../vocab.js';

/**
 * A TypeScript re-implementation of Hugging Face's slow `BertTokenizer` (transformers 4.40) as BLIP
 * configures it: BasicTokenizer + WordPiece, `[CLS] … [SEP]` template, with `[DEC]` (bos) and `[ENC]`
 * (additional special token) registered as added tokens. Every step mirrors the Python one, including
 * its quirks, because the ids feed models that were trained on exactly this tokenisation.
 */

export interface BertTokenizerOptions {
  doLowerCase: boolean;
  /** null: follow doLowerCase (HF's default). */
  stripAccents: boolean | null;
  tokenizeChineseChars: boolean;
  /** Used when truncation is asked for without a maxLength. */
  modelMaxLength: number;
  /** decode()'s default for cleanUpTokenizationSpaces (HF: tokenizer_config clean_up_tokenization_spaces). */
  cleanUpTokenizationSpaces?: boolean;
  /** Ids of BLIP's added tokens; the hub vocab.txt lacks them. */
  dec: number;
  enc: number;
}

export interface EncodeOptions {
  addSpecialTokens?: boolean;
  maxLength?: number;
  truncation?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
  cleanUpTokenizationSpaces?: boolean;
}

const UNK = '[UNK]';
const SEP = '[SEP]';
const PAD = '[PAD]';
const CLS = '[CLS]';
const MASK = '[MASK]';
const DEC = '[DEC]';
const ENC = '[ENC]';
const MAX_INPUT_CHARS_PER_WORD = 100;

// Python's str.isspace() set (what str.split()/strip() use); JS's \s differs (it has U+FEFF, lacks U+001C-1F, U+0085).
const PY_WHITESPACE_CODES = new Set<number>([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002,
  0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

export function isPyWhitespace(ch: string): boolean {
  return PY_WHITESPACE_CODES.has(ch.codePointAt(0) ?? -1);
}

const ZS = /^\p{Zs}$/u;
const CONTROL = /^[\p{Cc}\p{Cf}]$/u;
const PUNCT_CATEGORY = /^\p{P}$/u;
const MN = /^\p{Mn}$/u;

/** Python's `s.split()` with no argument. */
export function pySplit(text: string): string[] {
  const out: string[] = [];
  let current = '';
  for (const ch of text) {
    if (isPyWhitespace(ch)) {
      if (current) out.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (current) out.push(current);
  return out;
}

/** Python's `s.strip()` with no argument. */
export function pyStrip(text: string): string {
  const chars = Array.from(text);
  let a = 0;
  let b = chars.length;
  while (a < b && isPyWhitespace(chars[a])) a++;
  while (b > a && isPyWhitespace(chars[b - 1])) b--;
  return chars.slice(a, b).join('');
}

function isBertWhitespace(ch: string): boolean {
  return ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || ZS.test(ch);
}

function isBertControl(ch: string): boolean {
  if (ch === '\t' || ch === '\n' || ch === '\r') return false;
  return CONTROL.test(ch);
}

function isBertPunctuation(ch: string): boolean {
  const cp = ch.codePointAt(0) ?? 0;
  // BERT treats every non-alphanumeric ASCII character as punctuation, e.g. ^ $ ` (not Unicode P*).
  if (
    (cp >= 33 && cp <= 47) ||
    (cp >= 58 && cp <= 64) ||
    (cp >= 91 && cp <= 96) ||
    (cp >= 123 && cp <= 126)
  ) {
    return true;
  }
  return PUNCT_CATEGORY.test(ch);
}

/** The CJK Unified Ideograph blocks BERT splits into single-character words (not kana, not hangul). */
function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

function cleanText(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp === 0 || cp === 0xfffd || isBertControl(ch)) continue;
    out += isBertWhitespace(ch) ? ' ' : ch;
  }
  return out;
}

function spaceChineseChars(text: string): string {
  let out = '';
  for (const ch of text) {
    out += isChineseChar(ch.codePointAt(0) ?? 0) ? ` ${ch} ` : ch;
  }
  return out;
}

function stripAccents(text: string): string {
  let out = '';
  for (const ch of text.normalize('NFD')) {
    if (!MN.test(ch)) out += ch;
  }
  return out;
}

function splitOnPunctuation(text: string, neverSplit: ReadonlySet<string>): string[] {
  if (neverSplit.has(text)) return [text];
  const out: string[] = [];
  let current = '';
  for (const ch of text) {
    if (isBertPunctuation(ch)) {
      if (current) out.push(current);
      out.push(ch);
      current = '';
    } else {
      current += ch;
    }
  }
  if (current) out.push(current);
  return out;
}

export class BertTokenizer {
  readonly specialIds: SpecialIds;
  /** Number of entries in vocab.txt (HF's `vocab_size`, added tokens excluded). */
  readonly vocabSize: number;
  readonly options: BertTokenizerOptions;
  private readonly vocab: Map<string, number>;
  private readonly idToToken: Map<number, string>;
  private readonly added: Map<string, number>;
  private readonly addedById: Map<number, string>;
  /** HF's all_special_tokens, in its order (bos, sep, pad, cls, mask, unk… order only matters for prefixes). */
  private readonly specialTokens: readonly string[];
  private readonly specialTokenSet: ReadonlySet<string>;
  private readonly specialIdSet: ReadonlySet<number>;
  /** Added tokens whose decode keeps them apart from neighbouring word pieces (HF's legacy_added_tokens). */
  private readonly legacyAdded: ReadonlySet<string>;

  constructor(vocabTokens: readonly string[], options: BertTokenizerOptions) {
    this.options = options;
    this.vocab = vocabIds(vocabTokens);
    // Every index maps back to its line, a repeated token's earlier lines included.
    this.idToToken = new Map(vocabTokens.map((tok, i) => [i, tok]));
    this.vocabSize = this.vocab.size;
    for (const tok of [PAD, UNK, CLS, SEP, MASK]) {
      if (!this.vocab.has(tok)) throw new ModelError(`vocab.txt lacks the special token ${tok}`);
    }
    const id = (tok: string): number => this.vocab.get(tok) as number;
    this.specialIds = {
      pad: id(PAD),
      unk: id(UNK),
      cls: id(CLS),
      sep: id(SEP),
      mask: id(MASK),
      dec: options.dec,
      enc: options.enc,
    };
    this.added = new Map([
      [PAD, this.specialIds.pad],
      [UNK, this.specialIds.unk],
      [CLS, this.specialIds.cls],
      [SEP, this.specialIds.sep],
      [MASK, this.specialIds.mask],
      [DEC, options.dec],
      [ENC, options.enc],
    ]);
    this.addedById = new Map([...this.added].map(([t, i]) => [i, t]));
    this.specialTokens = [DEC, UNK, SEP, PAD, CLS, MASK, ENC];
    this.specialTokenSet = new Set(this.specialTokens);
    this.specialIdSet = new Set(this.added.values());
    this.legacyAdded = new Set(options.enc >= this.vocabSize ? [ENC] : []);
  }

  /** Loads vocab.txt and tokenizer_config.json; [DEC]/[ENC] ids come from the model config. */
  static async fromDir(dir: string, ids: { dec: number; enc: number }): Promise<BertTokenizer> {
    const vocab = await readVocab(dir);
    let cfg: Record<string, unknown> = {};
    try {
      cfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ModelError(`${dir}/tokenizer_config.json is unreadable`, { cause: err });
      }
    }
    const bool = (key: string, fallback: boolean): boolean =>
      typeof cfg[key] === 'boolean' ? (cfg[key] as boolean) : fallback;
    const strip = cfg['strip_accents'];
    const maxLen = cfg['model_max_length'];
    return new BertTokenizer(vocab, {
      doLowerCase: bool('do_lower_case', true),
      stripAccents: typeof strip === 'boolean' ? strip : null,
      tokenizeChineseChars: bool('tokenize_chinese_chars', true),
      modelMaxLength: typeof maxLen === 'number' && maxLen > 0 && maxLen < 1e9 ? maxLen : 512,
      cleanUpTokenizationSpaces: bool('clean_up_tokenization_spaces', true),
      dec: ids.dec,
      enc: ids.enc,
    });
  }

  /** Text to word pieces, as HF's `tokenizer.tokenize(text)`. */
  tokenize(text: string): string[] {
    const lowered = this.options.doLowerCase ? this.lowerOutsideSpecials(text) : text;
    const out: string[] = [];
    for (const chunk of this.splitOnAddedTokens(lowered)) {
      if (this.added.has(chunk)) out.push(chunk);
      else if (chunk) for (const t of this.tokenizeChunk(chunk)) out.push(t);
    }
    return out;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const addSpecial = opts.addSpecialTokens ?? true;
    let ids = this.tokenize(text).map((t) => this.tokenToId(t));
    // HF truncates when a maxLength comes without an explicit truncation flag (longest_first, with a warning).
    if (opts.truncation || (opts.maxLength !== undefined && opts.truncation === undefined)) {
      const maxLength = opts.maxLength ?? this.options.modelMaxLength;
      const budget = Math.max(0, maxLength - (addSpecial ? 2 : 0));
      if (ids.length > budget) ids = ids.slice(0, budget);
    }
    return addSpecial ? [this.specialIds.cls, ...ids, this.specialIds.sep] : ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens ?? false;
    const tokens = this.idsToTokens(ids, skip);
    const subTexts: string[] = [];
    let current: string[] = [];
    for (const tok of tokens) {
      if (this.legacyAdded.has(tok)) {
        if (current.length > 0) {
          const s = tokensToString(current);
          if (s.length > 0) subTexts.push(s);
          current = [];
        }
        subTexts.push(tok);
      } else {
        current.push(tok);
      }
    }
    if (current.length > 0) subTexts.push(tokensToString(current));
    const text = subTexts.join(' ');
    const cleanUp = opts.cleanUpTokenizationSpaces ?? this.options.cleanUpTokenizationSpaces ?? true;
    return cleanUp ? cleanUpTokenization(text) : text;
  }

  idsToTokens(ids: readonly number[], skipSpecialTokens = false): string[] {
    const out: string[] = [];
    for (const id of ids) {
      if (skipSpecialTokens && this.specialIdSet.has(id)) continue;
      out.push(this.addedById.get(id) ?? this.idToToken.get(id) ?? UNK);
    }
    return out;
  }

  tokenToId(token: string): number {
    return this.added.get(token) ?? this.vocab.get(token) ?? this.specialIds.unk;
  }

  isSpecialId(id: number): boolean {
    return this.specialIdSet.has(id);
  }

  /**
   * HF lower-cases the raw text one code point at a time before splitting off added tokens, leaving
   * special tokens untouched (so "[ENC]" survives and "[Enc]" does not become special).
   */
  private lowerOutsideSpecials(text: string): string {
    let out = '';
    let i = 0;
    while (i < text.length) {
      const special = this.specialTokens.find((t) => text.startsWith(t, i));
      if (special) {
        out += special;
        i += special.length;
        continue;
      }
      const cp = text.codePointAt(i) ?? 0;
      const ch = String.fromCodePoint(cp);
      // Python's regex `.` does not match a newline, so HF leaves it as is (lower() would too).
      out += ch === '\n' ? ch : ch.toLowerCase();
      i += ch.length;
    }
    return out;
  }

  /** Leftmost-longest split on added tokens (HF's Trie.split); none of them lstrip/rstrip. */
  private splitOnAddedTokens(text: string): string[] {
    const out: string[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      let best = '';
      for (const tok of this.added.keys()) {
        if (tok.length > best.length && text.startsWith(tok, i)) best = tok;
      }
      if (best) {
        if (i > start) out.push(text.slice(start, i));
        out.push(best);
        i += best.length;
        start = i;
      } else {
        i++;
      }
    }
    if (start < text.length) out.push(text.slice(start));
    return out;
  }

  private tokenizeChunk(text: string): string[] {
    const out: string[] = [];
    for (const word of this.basicTokenize(text)) {
      out.push(...this.wordPiece(word));
    }
    return out;
  }

  private basicTokenize(text: string): string[] {
    const neverSplit = this.specialTokenSet;
    let t = cleanText(text);
    if (this.options.tokenizeChineseChars) t = spaceChineseChars(t);
    t = t.normalize('NFC');
    const split: string[] = [];
    for (let token of pySplit(t)) {
      if (!neverSplit.has(token)) {
        if (this.options.doLowerCase) {
          token = token.toLowerCase();
          if (this.options.stripAccents !== false) token = stripAccents(token);
        } else if (this.options.stripAccents) {
          token = stripAccents(token);
        }
      }
      // Not push(...): one scraped "word" of punctuation can split into more pieces than a call takes arguments.
      for (const piece of splitOnPunctuation(token, neverSplit)) split.push(piece);
    }
    return pySplit(split.join(' '));
  }

  private wordPiece(word: string): string[] {
    const chars = Array.from(word);
    if (chars.length > MAX_INPUT_CHARS_PER_WORD) return [UNK];
    const pieces: string[] = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length;
      let found: string | null = null;
      while (start < end) {
        let sub = chars.slice(start, end).join('');
        if (start > 0) sub = `##${sub}`;
        if (this.vocab.has(sub)) {
          found = sub;
          break;
        }
        end--;
      }
      if (found === null) return [UNK];
      pieces.push(found);
      start = end;
    }
    return pieces;
  }
}

function tokensToString(tokens: readonly string[]): string {
  return pyStrip(tokens.join(' ').replaceAll(' ##', ''));
}

/** HF's clean_up_tokenization (on by default for BERT). */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

export interface ItmEncoding {
  inputIds: number[];
  attentionMask: number[];
}

/**
 * The ITM/ITC text input: `[CLS] text [SEP]` truncated to maxLength, with the first id swapped for
 * [ENC] when firstToken is 'enc' (BLIP's fine-tuning convention; HF keeps [CLS]).
 */
export function encodeForItm(
  tokenizer: BertTokenizer,
  text: string,
  opts: { maxLength: number; firstToken: 'enc' | 'cls'; pad?: boolean },
): ItmEncoding {
  const inputIds = tokenizer.encode(text, {
    addSpecialTokens: true,
    maxLength: opts.maxLength,
    truncation: true,
  });
  if (opts.firstToken === 'enc') inputIds[0] = tokenizer.specialIds.enc;
  const attentionMask = inputIds.map(() => 1);
  if (opts.pad) {
    while (inputIds.length < opts.maxLength) {
      inputIds.push(tokenizer.specialIds.pad);
      attentionMask.push(0);
    }
  }
  return { inputIds, attentionMask };
}
