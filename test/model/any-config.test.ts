import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../../src/core/defaults.js';
import type { DecodingOptions } from '../../src/core/types.js';
import { Filter } from '../../src/filter/filter.js';
import { type BlipConfig, parseBlipConfig } from '../../src/model/config.js';
import { importModel } from '../../src/model/convert/import.js';
import { BertTokenizer, encodeForItm } from '../../src/model/runtime/tokenizer.js';
import type { WeightMap } from '../../src/model/tensor.js';
import {
  decoderLogits,
  greedyCaption,
  itcCosine,
  itmLogits,
  itmProbability,
  visionForward,
} from '../helpers/blip-reference.js';
import { maxAbsDiff } from '../helpers/models.js';
import {
  blipConfigJson,
  normalStream,
  perturbedWeights,
  type TinyBlipShape,
  writeBlipCheckpoint,
} from '../helpers/random-blip.js';

// The ONNX graphs and engines against the naive reference (itself checked against Hugging Face in
// blip-reference.test.ts) on shapes the fixture does not have: whatever the fixture's 32/32 widths
// let a graph get away with (a hard-coded width, head count, eps, token count, Dv = Dt) shows here.

interface Case {
  name: string;
  shape: TinyBlipShape;
  seed: number;
  /** Checkpoint without cls.predictions.decoder.weight (the LM decoder tied to the word embeddings). */
  tiedDecoder?: boolean;
  /**
   * config.json without text_config.encoder_hidden_size, as Salesforce/blip-image-captioning-large
   * ships it: transformers takes the vision width.
   */
  noEncoderHiddenSize?: boolean;
}

const CASES: Case[] = [
  {
    name: 'vision 48w/3h/3L @48px/8, text 40w/5h/2L, itc 24',
    shape: {
      vision: { hidden: 48, layers: 3, heads: 3, ffn: 192, imageSize: 48, patchSize: 8 },
      text: { hidden: 40, layers: 2, heads: 5, ffn: 160 },
      imageTextHidden: 24,
    },
    seed: 101,
  },
  {
    name: 'vision 64w/8h/1L @32px/16 wider than text 32w/2h/3L (BLIP-large like), itc 16',
    shape: {
      vision: { hidden: 64, layers: 1, heads: 8, ffn: 256, imageSize: 32, patchSize: 16 },
      text: { hidden: 32, layers: 3, heads: 2, ffn: 128 },
      imageTextHidden: 16,
    },
    seed: 206,
    noEncoderHiddenSize: true,
  },
  {
    name: 'vision 24w/2h/2L @40px/10, text 48w/6h/1L, ffn not 4x, eps 1e-3/1e-2, 64 positions, tied LM decoder',
    shape: {
      vision: { hidden: 24, layers: 2, heads: 2, ffn: 40, imageSize: 40, patchSize: 10, eps: 1e-3 },
      text: { hidden: 48, layers: 1, heads: 6, ffn: 72, eps: 1e-2, maxPositions: 64 },
      imageTextHidden: 20,
    },
    seed: 303,
    tiedDecoder: true,
  },
];

/** "[DEC] a picture of" (BLIP's caption prompt after bos), written out so the tokenizer is not the judge of itself. */
const PROMPT_IDS = [30522, 1037, 3861, 1997];
const DEC_ONLY = [30522];
const SEP = 102;
const MAX_LENGTH = 12;
const MAX_TEXT = 16;
const TEXTS = [
  '',
  'a red circle and a blue square',
  'A PICTURE of a dog, running on the beach!',
  'café naïve 東京 🙂 [SEP] text',
  'a very long caption that keeps going well past the sixteen token budget of this test so it is truncated',
];

const greedy = (prompt: string): DecodingOptions => ({
  ...CAPFILT_DECODING,
  strategy: 'greedy',
  maxLength: MAX_LENGTH,
  minLength: 0,
  repetitionPenalty: 1,
  prompt,
});

/** Normalised-pixel-like values (CLIP-normalised pixels lie in about [-1.8, 2.2]). */
function randomPixels(cfg: BlipConfig, seed: number): Float32Array {
  const { imageSize: s, numChannels: c } = cfg.vision;
  const next = normalStream(seed);
  const out = new Float32Array(c * s * s);
  for (let i = 0; i < out.length; i++) out[i] = Math.max(-1.8, Math.min(2.2, 0.2 + 0.9 * next()));
  return out;
}

function bias(weights: WeightMap, key: string): Float32Array {
  const t = weights.get(key);
  if (!t) throw new Error(`no ${key}`);
  return t.data;
}

for (const c of CASES) {
  describe(`any BLIP config: ${c.name}`, () => {
    let dir: string;
    let capCfg: BlipConfig;
    let capW: WeightMap;
    let filCfg: BlipConfig;
    let filW: WeightMap;
    let tokenizer: BertTokenizer;
    let captioner: Captioner;
    let filter: Filter;
    const pixels: Float32Array[] = [];
    const capEmbeds: Float32Array[] = [];
    const filEmbeds: Float32Array[] = [];
    const itmIds = (text: string, firstToken: 'enc' | 'cls'): number[] =>
      encodeForItm(tokenizer, text, { maxLength: MAX_TEXT, firstToken }).inputIds;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'capfilt-anycfg-'));
      const capJson = blipConfigJson(c.shape, 'captioner');
      const filJson = blipConfigJson(c.shape, 'filter');
      if (c.noEncoderHiddenSize) {
        for (const json of [capJson, filJson])
          delete (json.text_config as Record<string, unknown>).encoder_hidden_size;
      }
      capCfg = parseBlipConfig(capJson);
      filCfg = parseBlipConfig(filJson);
      capW = perturbedWeights(capJson, c.seed, { tiedDecoder: c.tiedDecoder });
      filW = perturbedWeights(filJson, c.seed + 1);
      for (let i = 0; i < 2; i++) pixels.push(randomPixels(capCfg, c.seed * 10 + i));
      for (const p of pixels) {
        capEmbeds.push(visionForward(capW, capCfg, p));
        filEmbeds.push(visionForward(filW, filCfg, p));
      }

      // Raise [SEP]'s LM bias just enough that image 0's prompted caption ends after 3+ new tokens,
      // so the end-of-sequence path is exercised without cutting every caption short. The bias only
      // moves [SEP]'s logit: steps before the chosen one keep their argmax.
      const untuned = greedyCaption(capW, capCfg, capEmbeds[0], PROMPT_IDS, MAX_LENGTH, SEP).tokenIds;
      const gaps: number[] = [];
      for (let len = PROMPT_IDS.length; len < untuned.length; len++) {
        const logits = decoderLogits(capW, capCfg, capEmbeds[0], untuned.slice(0, len));
        gaps.push(Math.max(...logits) - logits[SEP]);
      }
      const stop = gaps.findIndex((g, k) => k >= 3 && gaps.slice(0, k).every((earlier) => earlier > g));
      if (stop < 0) throw new Error(`seed ${c.seed}: no step >= 3 where [SEP] can be made to win first`);
      const room = Math.min(...gaps.slice(0, stop)) - gaps[stop];
      bias(capW, 'text_decoder.cls.predictions.bias')[SEP] += gaps[stop] + Math.min(0.5, room / 2);
      await writeBlipCheckpoint(join(dir, 'hf-captioner'), capJson, capW);

      // Centre the ITM head on these texts (as the fixture does) so probabilities are not saturated.
      await writeBlipCheckpoint(join(dir, 'hf-filter'), filJson, filW);
      tokenizer = await BertTokenizer.fromDir(join(dir, 'hf-filter'), { dec: 30522, enc: 30523 });
      let diff = 0;
      let n = 0;
      for (const e of filEmbeds) {
        for (const text of TEXTS) {
          for (const first of ['cls', 'enc'] as const) {
            const [noMatch, match] = itmLogits(filW, filCfg, e, itmIds(text, first));
            diff += match - noMatch;
            n++;
          }
        }
      }
      bias(filW, 'itm_head.bias')[1] -= diff / n;
      await writeBlipCheckpoint(join(dir, 'hf-filter'), filJson, filW);

      await importModel(join(dir, 'hf-captioner'), join(dir, 'captioner'));
      await importModel(join(dir, 'hf-filter'), join(dir, 'filter'));
      captioner = await Captioner.load(join(dir, 'captioner'), { batchSize: 2 });
      filter = await Filter.load(join(dir, 'filter'), { batchSize: 2 });
    });

    afterAll(async () => {
      await captioner?.close();
      await filter?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('vision graphs: image_embeds within 1e-4 of the reference (captioner and filter)', async () => {
      const samples = pixels.map((p, i) => ({ key: `img${i}`, pixels: p }));
      const cap = (await captioner.encode(samples)).imageEmbeds;
      const fil = (await filter.encode(samples)).imageEmbeds;
      const tokens = (c.shape.vision.imageSize / c.shape.vision.patchSize) ** 2 + 1;
      const per = tokens * c.shape.vision.hidden;
      expect(cap.length).toBe(2 * per);
      expect(fil.length).toBe(2 * per);
      const capData = cap;
      const filData = fil;
      for (let i = 0; i < 2; i++) {
        expect(
          maxAbsDiff(capData.subarray(i * per, (i + 1) * per), capEmbeds[i]),
          `captioner img${i}`,
        ).toBeLessThan(1e-4);
        expect(
          maxAbsDiff(filData.subarray(i * per, (i + 1) * per), filEmbeds[i]),
          `filter img${i}`,
        ).toBeLessThan(1e-4);
      }
    });

    it('prompt ids are "[DEC] a picture of" and "[DEC]"', () => {
      expect(captioner.promptIds('a picture of ')).toEqual(PROMPT_IDS);
      expect(captioner.promptIds('')).toEqual(DEC_ONLY);
    });

    for (const [label, prompt, ids] of [
      ['prompted', 'a picture of ', PROMPT_IDS],
      ['unconditional', '', DEC_ONLY],
    ] as const) {
      it(`greedy ${label} captions: token ids identical to the reference (batched)`, async () => {
        const samples = pixels.map((p, i) => ({ key: `img${i}`, pixels: p }));
        const got = await captioner.caption(samples, greedy(prompt));
        for (let i = 0; i < samples.length; i++) {
          const ref = greedyCaption(capW, capCfg, capEmbeds[i], ids, MAX_LENGTH, SEP);
          // Each argmax is decided by far more than float32 noise, so equality is a fair demand.
          expect(Math.min(...ref.margins), `img${i} margin`).toBeGreaterThan(1e-3);
          expect(got[i][0].tokenIds, `img${i}`).toEqual(ref.tokenIds);
          if (label === 'prompted' && i === 0) {
            expect(ref.tokenIds.at(-1)).toBe(SEP);
            expect(ref.tokenIds.length).toBeGreaterThan(PROMPT_IDS.length + 3);
          }
        }
      });
    }

    for (const firstToken of ['cls', 'enc'] as const) {
      it(`filter: ITM (${firstToken === 'cls' ? '[CLS]' : '[ENC]'} first) and ITC within 1e-4`, async () => {
        const samples = pixels.map((p, i) => ({ key: `img${i}`, pixels: p, texts: TEXTS }));
        const scores = await filter.score(samples, { firstToken, maxTextLength: MAX_TEXT });
        const itms: number[] = [];
        const itcs: number[] = [];
        samples.forEach((_, i) => {
          TEXTS.forEach((text, j) => {
            const itm = itmProbability(filW, filCfg, filEmbeds[i], itmIds(text, firstToken));
            const itc = itcCosine(filW, filCfg, filEmbeds[i], itmIds(text, 'cls'));
            expect(Math.abs(scores[i][j].itm - itm), `img${i} text ${j} itm`).toBeLessThan(1e-4);
            expect(Math.abs(scores[i][j].itc - itc), `img${i} text ${j} itc`).toBeLessThan(1e-4);
            itms.push(itm);
            itcs.push(itc);
          });
        });
        // Discriminative outputs: a constant (or saturated) score could not tell the paths apart.
        expect(Math.max(...itms) - Math.min(...itms)).toBeGreaterThan(0.2);
        expect(Math.max(...itcs) - Math.min(...itcs)).toBeGreaterThan(0.05);
      });
    }
  });
}
