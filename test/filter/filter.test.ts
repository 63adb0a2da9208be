import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Filter } from '../../src/filter/filter.js';
import {
  embedDiffs,
  fixtureBin,
  IMAGE_NAMES,
  importTinyModels,
  REFERENCE,
  type TinyModels,
} from '../helpers/models.js';

interface ReferencePair {
  text: string;
  itm_prob: number;
  itc_cosine: number;
  itm_enc_first: { itm_prob: number };
}

const pairsOf = (image: string): ReferencePair[] => REFERENCE.filter.pairs[image];
const samples = IMAGE_NAMES.map((name) => ({
  key: name,
  pixels: fixtureBin(`pixel_values_${name}_png.bin`),
  texts: pairsOf(name).map((p) => p.text),
}));

describe('Filter on the blip-tiny fixture', () => {
  let models: TinyModels;
  let fp16: TinyModels;
  let filter: Filter;
  beforeAll(async () => {
    models = await importTinyModels();
    filter = await Filter.load(models.filter, { batchSize: 4 });
  });
  afterAll(async () => {
    await filter?.close();
    models?.dispose();
    fp16?.dispose();
  });

  it('encodes images within 1e-4 of Hugging Face', async () => {
    const { imageEmbeds } = await filter.encode(samples);
    for (const diff of embedDiffs('filter', imageEmbeds)) expect(diff).toBeLessThan(1e-4);
  });

  it('ITM with [CLS] first and ITC match Hugging Face within 1e-4 for every pair', async () => {
    const scores = await filter.score(samples, { firstToken: 'cls', maxTextLength: 35 });
    IMAGE_NAMES.forEach((name, i) => {
      pairsOf(name).forEach((ref, j) => {
        expect(Math.abs(scores[i][j].itm - ref.itm_prob), `${name} #${j} itm`).toBeLessThan(1e-4);
        expect(Math.abs(scores[i][j].itc - ref.itc_cosine), `${name} #${j} itc`).toBeLessThan(1e-4);
      });
    });
  });

  it('ITM with [ENC] first (BLIP fine-tuning convention) matches the reference', async () => {
    const scores = await filter.score(samples, { firstToken: 'enc', maxTextLength: 35 });
    IMAGE_NAMES.forEach((name, i) => {
      pairsOf(name).forEach((ref, j) => {
        expect(Math.abs(scores[i][j].itm - ref.itm_enc_first.itm_prob), `${name} #${j}`).toBeLessThan(1e-4);
      });
    });
  });

  it('the whole-graph call matches Hugging Face and the host path, whatever the texts per image', async () => {
    const inGraph = await Filter.load(models.filter, { batchSize: 4, wholeGraph: true });
    try {
      for (const firstToken of ['cls', 'enc'] as const) {
        const scores = await inGraph.score(samples, { firstToken, maxTextLength: 35 });
        IMAGE_NAMES.forEach((name, i) => {
          pairsOf(name).forEach((ref, j) => {
            const itm = firstToken === 'cls' ? ref.itm_prob : ref.itm_enc_first.itm_prob;
            expect(Math.abs(scores[i][j].itm - itm), `${name} #${j} itm`).toBeLessThan(1e-4);
            expect(Math.abs(scores[i][j].itc - ref.itc_cosine), `${name} #${j} itc`).toBeLessThan(1e-4);
          });
        });
      }
      // Uneven texts per image (one none): the short images repeat a text whose scores are dropped.
      const uneven = samples.map((s, i) => ({ ...s, texts: s.texts.slice(0, i % 4) }));
      const options = { firstToken: 'enc' as const, maxTextLength: 35 };
      const a = await inGraph.score(uneven, options);
      const b = await filter.score(uneven, options);
      expect(a.map((x) => x.length)).toEqual(uneven.map((s) => s.texts.length));
      a.forEach((texts, i) => {
        texts.forEach((s, j) => {
          expect(Math.abs(s.itm - b[i][j].itm)).toBeLessThan(1e-5);
          expect(Math.abs(s.itc - b[i][j].itc)).toBeLessThan(1e-5);
        });
      });
    } finally {
      await inGraph.close();
    }
  });

  it('a whole-graph call passes only pixels, token ids and scores through onnxruntime', async () => {
    const inGraph = await Filter.load(models.filter, { batchSize: 6, wholeGraph: true });
    try {
      const two = samples.map((s) => ({ ...s, texts: ['a red square', 'two stripes on a gray picture'] }));
      await inGraph.score(two, { firstToken: 'enc', maxTextLength: 35 });
      const texts = two.length * 2;
      // [ENC]/[CLS] + 3 or 6 word pieces + [SEP]: ITM and ITC ids and masks padded to 8 tokens.
      const ids = 4 * texts * 8 * 8;
      expect(inGraph.traffic).toEqual({
        bytesIn: two.length * 3 * 64 * 64 * 4 + ids,
        bytesOut: texts * 12,
        images: 6,
      });
    } finally {
      await inGraph.close();
    }
  });

  it('gives the same scores one sample at a time as in a batch', async () => {
    const batched = await filter.score(samples, { firstToken: 'enc', maxTextLength: 35 });
    for (let i = 0; i < samples.length; i++) {
      const [single] = await filter.score([samples[i]], { firstToken: 'enc', maxTextLength: 35 });
      single.forEach((s, j) => {
        expect(Math.abs(s.itm - batched[i][j].itm)).toBeLessThan(1e-5);
        expect(Math.abs(s.itc - batched[i][j].itc)).toBeLessThan(1e-5);
      });
    }
  });

  it('gives every text the same scores whatever the order, batch size and company', async () => {
    const options = { firstToken: 'enc', maxTextLength: 35 } as const;
    const reference = await filter.score(samples, options);
    const close = (a: { itm: number; itc: number }, b: { itm: number; itc: number }, what: string) => {
      expect(Math.abs(a.itm - b.itm), `${what} itm`).toBeLessThan(1e-5);
      expect(Math.abs(a.itc - b.itc), `${what} itc`).toBeLessThan(1e-5);
    };
    // Reversed samples with their texts reversed, a text repeated, a long text added and an image
    // with no texts: other call lengths, other row counts per call, another ITM/ITC grouping.
    const long = 'a very long text about nothing in particular that goes on and on and on until it is cut';
    const mixed: { key: string; pixels: Float32Array; texts: string[] }[] = [...samples]
      .reverse()
      .map((s, i) => ({
        ...s,
        texts: i % 2 ? [...s.texts].reverse() : [...s.texts, s.texts[0], long],
      }));
    mixed.splice(2, 0, { ...samples[0], key: 'none', texts: [] });
    const single = await Filter.load(models.filter, { batchSize: 1, visionBatchSize: 1 });
    try {
      for (const [engine, label] of [
        [filter, 'batch 4'],
        [single, 'batch 1'],
      ] as const) {
        const got = await engine.score(mixed, options);
        mixed.forEach((s, i) => {
          if (s.key === 'none') {
            expect(got[i]).toEqual([]);
            return;
          }
          const original = IMAGE_NAMES.indexOf(s.key as (typeof IMAGE_NAMES)[number]);
          s.texts.forEach((text, j) => {
            const at = samples[original].texts.indexOf(text);
            if (at >= 0) close(got[i][j], reference[original][at], `${label} ${s.key} ${text}`);
          });
        });
      }
    } finally {
      await single.close();
    }
  });

  it('fp16 graphs stay within 1e-2 of fp32 on ITM probabilities', async () => {
    fp16 = await importTinyModels({ precision: 'fp16' });
    const half = await Filter.load(fp16.filter);
    try {
      const a = await filter.score(samples, { firstToken: 'enc', maxTextLength: 35 });
      const b = await half.score(samples, { firstToken: 'enc', maxTextLength: 35 });
      expect(half.manifest.precision).toBe('fp16');
      a.forEach((row, i) => {
        row.forEach((s, j) => {
          expect(Math.abs(s.itm - b[i][j].itm)).toBeLessThan(1e-2);
        });
      });
    } finally {
      await half.close();
    }
  });
});
