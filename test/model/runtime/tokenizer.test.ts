import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/core/errors.js';
import { BertTokenizer, encodeForItm } from '../../../src/model/runtime/tokenizer.js';

const FIXTURE = join(import.meta.dirname, '../../fixtures/blip-tiny');

interface TokenizerCase {
  text: string;
  tokens: string[];
  ids: number[];
  ids_no_special: number[];
  decoded: string;
  decoded_skip_special: string;
  decoded_no_special_ids: string;
}

interface FilterPair {
  text: string;
  input_ids: number[];
  attention_mask: number[];
  unpadded: { input_ids: number[] };
}

interface Reference {
  tokenizer: { cases: TokenizerCase[]; special_ids: Record<string, number> };
  filter: { pairs: Record<string, FilterPair[]> };
}

let ref: Reference;
let tok: BertTokenizer;

beforeAll(async () => {
  ref = JSON.parse(await readFile(join(FIXTURE, 'reference.json'), 'utf8')) as Reference;
  tok = await BertTokenizer.fromDir(join(FIXTURE, 'captioner'), { dec: 30522, enc: 30523 });
});

describe('BertTokenizer against HF slow BertTokenizer reference cases', () => {
  it('has the reference cases and special ids', () => {
    expect(ref.tokenizer.cases.length).toBeGreaterThan(20);
    const s = ref.tokenizer.special_ids;
    expect(tok.specialIds).toEqual({
      pad: s.pad,
      unk: s.unk,
      cls: s.cls,
      sep: s.sep,
      mask: s.mask,
      dec: s.dec_bos,
      enc: s.enc,
    });
    expect(tok.vocabSize).toBe(30522);
  });

  it('reproduces tokens, ids and decodes of every case', () => {
    const failures: string[] = [];
    for (const c of ref.tokenizer.cases) {
      const got = {
        tokens: tok.tokenize(c.text),
        ids: tok.encode(c.text),
        ids_no_special: tok.encode(c.text, { addSpecialTokens: false }),
        decoded: tok.decode(c.ids),
        decoded_skip_special: tok.decode(c.ids, { skipSpecialTokens: true }),
        decoded_no_special_ids: tok.decode(c.ids_no_special),
      };
      const want = {
        tokens: c.tokens,
        ids: c.ids,
        ids_no_special: c.ids_no_special,
        decoded: c.decoded,
        decoded_skip_special: c.decoded_skip_special,
        decoded_no_special_ids: c.decoded_no_special_ids,
      };
      for (const key of Object.keys(want) as (keyof typeof want)[]) {
        if (JSON.stringify(got[key]) !== JSON.stringify(want[key])) {
          failures.push(
            `${JSON.stringify(c.text)} ${key}: got ${JSON.stringify(got[key])} want ${JSON.stringify(want[key])}`,
          );
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('maps tokens and ids both ways, unknowns to [UNK]', () => {
    expect(tok.tokenToId('[ENC]')).toBe(30523);
    expect(tok.tokenToId('[DEC]')).toBe(30522);
    expect(tok.tokenToId('dog')).toBe(3899);
    expect(tok.tokenToId('no-such-token')).toBe(100);
    expect(tok.idsToTokens([101, 3899, 30522, 30523, 999999])).toEqual([
      '[CLS]',
      'dog',
      '[DEC]',
      '[ENC]',
      '[UNK]',
    ]);
    expect(tok.idsToTokens([101, 3899, 102, 0], true)).toEqual(['dog']);
  });

  it('decodes word pieces and keeps [ENC] apart as HF does', () => {
    expect(tok.decode([30522, 1037, 3899, 102], { skipSpecialTokens: true })).toBe('a dog');
    expect(tok.decode([30523, 3899])).toBe('[ENC] dog');
    expect(tok.decode([1037, 3899, 1012], { cleanUpTokenizationSpaces: false })).toBe('a dog .');
  });
});

describe('truncation and ITM encoding', () => {
  it('truncates keeping [SEP] last', () => {
    const text = 'one two three four five six seven eight';
    const ids = tok.encode(text, { maxLength: 5, truncation: true });
    expect(ids).toHaveLength(5);
    expect(ids[0]).toBe(101);
    expect(ids[4]).toBe(102);
    expect(ids.slice(1, 4)).toEqual(tok.encode(text, { addSpecialTokens: false }).slice(0, 3));
    expect(tok.encode(text, { maxLength: 5, truncation: false })).toHaveLength(10);
    // HF truncates when only max_length is given.
    expect(tok.encode(text, { maxLength: 5 })).toEqual(ids);
    expect(tok.encode(text, { maxLength: 3, addSpecialTokens: false })).toHaveLength(3);
  });

  it('tokenizes a text of hundreds of thousands of punctuation marks', () => {
    const ids = tok.encode(','.repeat(300_000), { maxLength: 5, truncation: true });
    expect(ids).toEqual([101, ...tok.encode(',,,', { addSpecialTokens: false }), 102]);
  });

  it('reproduces every filter pair input_ids and attention_mask (padded and unpadded)', () => {
    let n = 0;
    for (const pairs of Object.values(ref.filter.pairs)) {
      for (const p of pairs) {
        const padded = encodeForItm(tok, p.text, { maxLength: 35, firstToken: 'cls', pad: true });
        expect(padded.inputIds, p.text).toEqual(p.input_ids);
        expect(padded.attentionMask, p.text).toEqual(p.attention_mask);
        const unpadded = encodeForItm(tok, p.text, { maxLength: 35, firstToken: 'cls' });
        expect(unpadded.inputIds).toEqual(p.unpadded.input_ids);
        expect(unpadded.attentionMask).toEqual(p.unpadded.input_ids.map(() => 1));
        const enc = encodeForItm(tok, p.text, { maxLength: 35, firstToken: 'enc' });
        expect(enc.inputIds).toEqual([30523, ...p.unpadded.input_ids.slice(1)]);
        n++;
      }
    }
    expect(n).toBe(36);
  });
});

describe('fromDir settings', () => {
  const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'hello', 'Hello', 'cafe', 'café', '##s'];

  async function withDir(config: object | null, fn: (dir: string) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-tok-'));
    try {
      await writeFile(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
      if (config) await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
      await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('lower-cases and strips accents by default (no tokenizer_config.json)', async () => {
    await withDir(null, async (dir) => {
      const t = await BertTokenizer.fromDir(dir, { dec: 10, enc: 11 });
      expect(t.tokenize('Hello CAFÉS')).toEqual(['hello', 'cafe', '##s']);
      expect(t.encode('Hello')).toEqual([2, 5, 3]);
      expect(t.specialIds).toMatchObject({ pad: 0, unk: 1, cls: 2, sep: 3, mask: 4, dec: 10, enc: 11 });
    });
  });

  it('keeps case and accents when do_lower_case is false', async () => {
    await withDir({ do_lower_case: false }, async (dir) => {
      const t = await BertTokenizer.fromDir(dir, { dec: 10, enc: 11 });
      expect(t.tokenize('Hello hello café')).toEqual(['Hello', 'hello', 'café']);
      expect(t.tokenize('HELLO')).toEqual(['[UNK]']);
    });
  });

  it('keeps accents when strip_accents is false, and honours clean_up_tokenization_spaces', async () => {
    await withDir({ strip_accents: false, clean_up_tokenization_spaces: false }, async (dir) => {
      const t = await BertTokenizer.fromDir(dir, { dec: 10, enc: 11 });
      expect(t.tokenize('CAFÉ')).toEqual(['café']);
      expect(t.decode([5, t.tokenToId('[UNK]')])).toBe('hello [UNK]');
    });
  });

  it('fails with a ModelError when vocab.txt is missing', async () => {
    await expect(
      BertTokenizer.fromDir(join(tmpdir(), 'capfilt-no-such-dir'), { dec: 1, enc: 2 }),
    ).rejects.toThrow(ModelError);
  });
});
