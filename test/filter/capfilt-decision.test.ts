import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../../src/core/defaults.js';
import { decideTexts } from '../../src/filter/decision.js';
import { Filter } from '../../src/filter/filter.js';
import { fixtureBin, IMAGE_NAMES, importTinyModels, REFERENCE, type TinyModels } from '../helpers/models.js';

// The CapFilt decision on the fixture, end to end through both engines: every text, web and
// synthetic, is kept iff its ITM match probability is above the threshold.
describe('CapFilt decisions on the fixture', () => {
  let models: TinyModels;
  let captioner: Captioner;
  let filter: Filter;
  beforeAll(async () => {
    models = await importTinyModels();
    captioner = await Captioner.load(models.captioner);
    filter = await Filter.load(models.filter);
  });
  afterAll(async () => {
    await captioner?.close();
    await filter?.close();
    models?.dispose();
  });

  for (const threshold of [0.1, 0.5, 0.9]) {
    it(`threshold ${threshold}: kept iff itm > threshold, web and synthetic judged independently`, async () => {
      const pixels = IMAGE_NAMES.map((name) => fixtureBin(`pixel_values_${name}_png.bin`));
      const captions = await captioner.caption(
        IMAGE_NAMES.map((key, i) => ({ key, pixels: pixels[i] })),
        { ...CAPFILT_DECODING, numCaptions: 2 },
      );
      let kept = 0;
      let dropped = 0;
      for (const [i, name] of IMAGE_NAMES.entries()) {
        for (const pair of REFERENCE.filter.pairs[name] as { text: string }[]) {
          const texts = [pair.text, ...captions[i].map((c) => c.text)];
          const [scores] = await filter.score([{ key: name, pixels: pixels[i], texts }], {
            firstToken: 'enc',
            maxTextLength: 35,
          });
          const decision = decideTexts(
            {
              web: { text: texts[0], score: scores[0] },
              synthetic: texts.slice(1).map((text, j) => ({ text, score: scores[j + 1] })),
            },
            { threshold, consider: 'both', keepTop: 0 },
          );
          expect(decision.webKept).toBe(scores[0].itm > threshold);
          decision.syntheticKept.forEach((k, j) => {
            expect(k).toBe(scores[j + 1].itm > threshold);
          });
          expect(decision.texts).toEqual(texts.filter((_, j) => scores[j].itm > threshold));
          for (const s of scores) s.itm > threshold ? kept++ : dropped++;
        }
      }
      if (threshold === 0.5) expect(kept * dropped).toBeGreaterThan(0);
    });
  }
});
