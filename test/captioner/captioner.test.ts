import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { CAPFILT_DECODING, type DecodingOptions } from '../../src/captioner/options.js';
import {
  fixtureBin,
  IMAGE_NAMES,
  importTinyModels,
  maxAbsDiff,
  REFERENCE,
  type TinyModels,
} from '../helpers/models.js';

const samples = IMAGE_NAMES.map((name) => ({
  key: name,
  pixels: fixtureBin(`pixel_values_${name}_png.bin`),
}));

// The reference's generate() calls, in capfilt's option vocabulary (lengths count the prompt).
const greedy = (promptLength: number): Partial<DecodingOptions> => ({
  strategy: 'greedy',
  maxLength: promptLength + 20,
  minLength: 0,
  repetitionPenalty: 1,
});
const CASES: Record<string, Partial<DecodingOptions>> = {
  greedy_prompt: { ...greedy(4), prompt: 'a picture of ' },
  greedy_unconditional: { ...greedy(1), prompt: '' },
  beam3_prompt: {
    strategy: 'beam',
    numBeams: 3,
    maxLength: 20,
    minLength: 5,
    repetitionPenalty: 1,
    prompt: 'a picture of ',
  },
  beam3_unconditional: {
    strategy: 'beam',
    numBeams: 3,
    maxLength: 20,
    minLength: 5,
    repetitionPenalty: 1,
    prompt: '',
  },
};

describe('Captioner on the blip-tiny fixture', () => {
  let models: TinyModels;
  let captioner: Captioner;
  beforeAll(async () => {
    models = await importTinyModels();
    captioner = await Captioner.load(models.captioner, { batchSize: 4 });
  });
  afterAll(async () => {
    await captioner?.close();
    models?.dispose();
  });

  it('encodes images within 1e-4 of Hugging Face', async () => {
    const { imageEmbeds } = await captioner.encode(samples);
    const data = imageEmbeds.data as Float32Array;
    const per = data.length / samples.length;
    IMAGE_NAMES.forEach((name, i) => {
      const ref = fixtureBin(`captioner_image_embeds_${name}.bin`);
      expect(maxAbsDiff(data.subarray(i * per, (i + 1) * per), ref)).toBeLessThan(1e-4);
    });
  });

  it('builds the prompt as BLIP does', () => {
    expect(captioner.promptIds('a picture of ')).toEqual(
      REFERENCE.captioner.generation.greedy_prompt.decoder_input_ids,
    );
    expect(captioner.promptIds('')).toEqual([30522]);
  });

  for (const [name, opts] of Object.entries(CASES)) {
    it(`${name}: token ids identical to Hugging Face, batched and one by one`, async () => {
      const options = { ...CAPFILT_DECODING, ...opts };
      const batched = await captioner.caption(samples, options);
      const single: Awaited<ReturnType<Captioner['caption']>> = [];
      for (const s of samples) single.push(...(await captioner.caption([s], options)));
      const results = REFERENCE.captioner.generation[name].results;
      IMAGE_NAMES.forEach((image, i) => {
        expect(batched[i][0].tokenIds, image).toEqual(results[image].sequence);
        expect(single[i][0].tokenIds, image).toEqual(results[image].sequence);
      });
    });
  }
});
