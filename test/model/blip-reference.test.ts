import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BlipConfig, readBlipConfig } from '../../src/model/config.js';
import { loadCheckpoint } from '../../src/model/convert/checkpoint.js';
import type { WeightMap } from '../../src/model/tensor.js';
import {
  decoderLogits,
  erf,
  greedyCaption,
  itcCosine,
  itmProbability,
  visionForward,
} from '../helpers/blip-reference.js';
import { FIXTURE, fixtureBin, IMAGE_NAMES, maxAbsDiff, REFERENCE } from '../helpers/models.js';

// The reference must itself reproduce Hugging Face on the fixture before it may judge other configs.

interface Model {
  weights: WeightMap;
  cfg: BlipConfig;
}

async function load(kind: 'captioner' | 'filter'): Promise<Model> {
  const dir = join(FIXTURE, kind);
  const [{ weights }, cfg] = await Promise.all([loadCheckpoint(dir), readBlipConfig(dir)]);
  return { weights, cfg };
}

const pixelsOf = (image: string): Float32Array => fixtureBin(`pixel_values_${image}_png.bin`);

interface ReferencePair {
  input_ids: number[];
  attention_mask: number[];
  itm_prob: number;
  itc_cosine: number;
  itm_enc_first: { itm_prob: number };
}

describe('erf / GELU', () => {
  it('matches tabulated erf values', () => {
    // Abramowitz & Stegun table 7.1 / high-precision values.
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 14);
    expect(erf(1)).toBeCloseTo(0.8427007929497149, 14);
    expect(erf(-2)).toBeCloseTo(-0.9953222650189527, 14);
    expect(erf(3)).toBeCloseTo(0.9999779095030014, 14);
    // Deep in the tail only the absolute error (a few ulps of 1) matters to GELU.
    expect(Math.abs(1 - erf(5) - 1.5374597944280349e-12)).toBeLessThan(2e-15);
    expect(erf(7)).toBe(1);
  });
});

describe('naive BLIP reference vs Hugging Face on the blip-tiny fixture', () => {
  let captioner: Model;
  let filter: Model;
  const embeds: Record<string, Float32Array> = {};
  beforeAll(async () => {
    captioner = await load('captioner');
    filter = await load('filter');
  });

  it('vision encoder: image_embeds within 1e-4 (captioner and filter, every image)', () => {
    for (const image of IMAGE_NAMES) {
      const c = visionForward(captioner.weights, captioner.cfg, pixelsOf(image));
      const f = visionForward(filter.weights, filter.cfg, pixelsOf(image));
      expect(maxAbsDiff(c, fixtureBin(`captioner_image_embeds_${image}.bin`)), image).toBeLessThan(1e-4);
      expect(maxAbsDiff(f, fixtureBin(`filter_image_embeds_${image}.bin`)), image).toBeLessThan(1e-4);
      embeds[`captioner/${image}`] = c;
      embeds[`filter/${image}`] = f;
    }
  });

  it('decoder: the first three steps of logits within 1e-3', () => {
    const image = REFERENCE.captioner.step_logits.image as string;
    const imageEmbeds = visionForward(captioner.weights, captioner.cfg, pixelsOf(image));
    for (const step of REFERENCE.captioner.step_logits.steps as {
      bin: string;
      decoder_input_ids: number[];
    }[]) {
      const logits = decoderLogits(captioner.weights, captioner.cfg, imageEmbeds, step.decoder_input_ids);
      const ref = fixtureBin(step.bin.replace(/^bins\//, ''));
      expect(logits.length).toBe(ref.length);
      expect(maxAbsDiff(logits, ref), step.bin).toBeLessThan(1e-3);
    }
  });

  for (const run of ['greedy_prompt', 'greedy_unconditional']) {
    it(`${run}: greedy sequences identical to Hugging Face`, () => {
      const spec = REFERENCE.captioner.generation[run];
      const prompt = spec.decoder_input_ids as number[];
      const maxLength = prompt.length + (spec.generate_kwargs.max_new_tokens as number);
      for (const image of IMAGE_NAMES) {
        const imageEmbeds =
          embeds[`captioner/${image}`] ?? visionForward(captioner.weights, captioner.cfg, pixelsOf(image));
        const { tokenIds } = greedyCaption(
          captioner.weights,
          captioner.cfg,
          imageEmbeds,
          prompt,
          maxLength,
          102,
        );
        expect(tokenIds, image).toEqual(spec.results[image].sequence);
      }
    });
  }

  it('ITM ([CLS] and [ENC] first, padded to 35 with the mask) and ITC within 1e-4 for every pair', () => {
    let checked = 0;
    for (const image of IMAGE_NAMES) {
      const imageEmbeds =
        embeds[`filter/${image}`] ?? visionForward(filter.weights, filter.cfg, pixelsOf(image));
      for (const [j, pair] of (REFERENCE.filter.pairs[image] as ReferencePair[]).entries()) {
        const { input_ids: ids, attention_mask: mask } = pair;
        const label = `${image} #${j}`;
        const itm = itmProbability(filter.weights, filter.cfg, imageEmbeds, ids, mask);
        expect(Math.abs(itm - pair.itm_prob), `${label} itm`).toBeLessThan(1e-4);
        const encIds = [30523, ...ids.slice(1)];
        const itmEnc = itmProbability(filter.weights, filter.cfg, imageEmbeds, encIds, mask);
        expect(Math.abs(itmEnc - pair.itm_enc_first.itm_prob), `${label} itm [ENC]`).toBeLessThan(1e-4);
        const itc = itcCosine(filter.weights, filter.cfg, imageEmbeds, ids, mask);
        expect(Math.abs(itc - pair.itc_cosine), `${label} itc`).toBeLessThan(1e-4);
        checked++;
      }
    }
    expect(checked).toBe(36);
  });

  it('padding is masked out: the unpadded ids give the same ITM and ITC', () => {
    const image = IMAGE_NAMES[1];
    const imageEmbeds = visionForward(filter.weights, filter.cfg, pixelsOf(image));
    const pair = REFERENCE.filter.pairs[image][1] as ReferencePair;
    const real = pair.attention_mask.reduce((a, b) => a + b, 0);
    expect(real).toBeLessThan(35);
    const ids = pair.input_ids.slice(0, real);
    expect(
      Math.abs(itmProbability(filter.weights, filter.cfg, imageEmbeds, ids) - pair.itm_prob),
    ).toBeLessThan(1e-4);
    expect(Math.abs(itcCosine(filter.weights, filter.cfg, imageEmbeds, ids) - pair.itc_cosine)).toBeLessThan(
      1e-4,
    );
    // ...and ignoring the mask must change the answer, or the check above proves nothing.
    const unmasked = pair.input_ids.map(() => 1);
    expect(
      Math.abs(
        itmProbability(filter.weights, filter.cfg, imageEmbeds, pair.input_ids, unmasked) - pair.itm_prob,
      ),
    ).toBeGreaterThan(1e-3);
  });
});
