import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { runOptions } from '../../src/core/options.js';
import type { PairRef } from '../../src/core/types.js';
import { Filter } from '../../src/filter/filter.js';
import { decodeImage } from '../../src/io/image.js';
import { Storage } from '../../src/io/storage/storage.js';
import { loadSamples } from '../../src/pipeline/stages.js';
import { FIXTURE, importTinyModels, type TinyModels } from '../helpers/models.js';

describe('loadSamples', () => {
  let models: TinyModels;
  let captioner: Captioner;
  let filter: Filter;
  const storage = new Storage();
  beforeAll(async () => {
    models = await importTinyModels();
    captioner = await Captioner.load(models.captioner);
    filter = await Filter.load(models.filter);
  });
  afterAll(async () => {
    storage.close();
    await captioner?.close();
    await filter?.close();
    models?.dispose();
  });

  it('decodes once and shares the pixel tensor when both models preprocess alike', async () => {
    const path = join(FIXTURE, 'images', '1_shapes.png');
    const pair: PairRef = {
      key: 'k',
      shardId: 's',
      index: 0,
      source: path,
      image: { kind: 'location', uri: path },
      text: 'a caption',
      meta: {},
    };
    const options = runOptions({ sources: { localRoots: [join(FIXTURE, 'images')] } });
    const [sample] = await loadSamples([pair], { storage, options, captioner, filter });
    expect(sample.rejection).toBeUndefined();
    expect(sample.filterPixels).toBe(sample.captionerPixels);
    const expected = captioner.pixels(await decodeImage(readFileSync(path), 'k'));
    expect(Array.from(sample.captionerPixels as Float32Array)).toEqual(Array.from(expected));
  });
});
