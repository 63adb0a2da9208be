import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../../../src/core/defaults.js';
import type { TextScore } from '../../../src/core/types.js';
import { Filter } from '../../../src/filter/filter.js';
import { importModel } from '../../../src/model/convert/import.js';
import { readManifest } from '../../../src/model/manifest.js';
import { fixtureBin, IMAGE_NAMES, maxAbsDiff } from '../../helpers/models.js';
import { readGraph } from '../../helpers/onnx-graph.js';
import { blipConfigJson, perturbedWeights, writeBlipCheckpoint } from '../../helpers/random-blip.js';
import { INSTALL_HINT, inWebGpuChild, probeWebGpu, SKIP_ENV } from '../../helpers/webgpu.js';

// BLIP's text transformer has 12 layers (base and large), so its cross keys/values are 24 tensors;
// the fixture's has 2. One Split into 24 outputs binds 25 storage buffers, more than a WebGPU
// shader stage may have (8 guaranteed, 16 on lavapipe): the portable set must split in steps.
// Narrow widths keep this cheap on a software Vulkan device; only the depth is BLIP's.
const SHAPE = {
  vision: { hidden: 16, layers: 1, heads: 2, ffn: 32, imageSize: 64, patchSize: 16 },
  text: { hidden: 16, layers: 12, heads: 2, ffn: 32 },
  imageTextHidden: 8,
};
const images = [...IMAGE_NAMES].slice(0, 3);
const TEXTS = [['a red square', 'noise'], ['two shapes'], ['stripes on a wall', 'a cat', 'buy now']];
const work = mkdtempSync(join(tmpdir(), 'capfilt-depth-'));
const probe = probeWebGpu();

describe('a model of BLIP depth (12 text layers) on the WebGPU set', () => {
  const dirs = { captioner: join(work, 'captioner'), filter: join(work, 'filter') };
  beforeAll(async () => {
    for (const [i, kind] of (['captioner', 'filter'] as const).entries()) {
      const json = blipConfigJson(SHAPE, kind);
      const hf = join(work, `hf-${kind}`);
      await writeBlipCheckpoint(hf, json, perturbedWeights(json, 41 + i));
      await importModel(hf, dirs[kind], { webgpuSteps: 3 });
    }
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('no Split of the WebGPU set has more than 7 outputs; the CPU set keeps one Split', async () => {
    for (const dir of Object.values(dirs)) {
      const m = await readManifest(dir);
      for (const role of Object.keys(m.webgpu.graphs)) {
        const outputs = readGraph(join(dir, m.webgpu.graphs[role])).splits;
        expect(Math.max(...outputs), role).toBeLessThanOrEqual(7);
      }
      expect(Math.max(...readGraph(join(dir, m.graphs.cross_kv)).splits)).toBe(24);
    }
  });

  it.skipIf(!probe.available && process.env[SKIP_ENV] === '1')(
    'runs on WebGPU: ITM and ITC within 1e-4 of the CPU, greedy tokens equal',
    async () => {
      if (!probe.available) throw new Error(`${INSTALL_HINT} (${probe.reason})`);
      const { result } = await inWebGpuChild<{ inGraph: TextScore[][]; onHost: TextScore[][] }>('scores', {
        captioner: dirs.captioner,
        filter: dirs.filter,
        images,
        texts: TEXTS,
      });
      const samples = images.map((key, i) => ({
        key,
        pixels: fixtureBin(`pixel_values_${key}_png.bin`),
        texts: TEXTS[i],
      }));
      const cpu = await Filter.load(dirs.filter);
      const reference = await cpu.score(samples, { firstToken: 'enc', maxTextLength: 35 });
      await cpu.close();
      const flat = (s: TextScore[][], k: keyof TextScore) => s.flat().map((x) => x[k]);
      for (const path of [result.inGraph, result.onHost]) {
        expect(maxAbsDiff(flat(path, 'itm'), flat(reference, 'itm'))).toBeLessThan(1e-4);
        expect(maxAbsDiff(flat(path, 'itc'), flat(reference, 'itc'))).toBeLessThan(1e-4);
      }

      const decoding = { ...CAPFILT_DECODING, strategy: 'greedy' as const, maxLength: 7, minLength: 0 };
      const captions = await inWebGpuChild<{ tokenIds: number[][][] }>('caption', {
        captioner: dirs.captioner,
        filter: dirs.filter,
        images,
        decoding,
      });
      const captioner = await Captioner.load(dirs.captioner);
      const expected = await captioner.caption(samples, decoding);
      await captioner.close();
      expect(captions.result.tokenIds).toEqual(expected.map((c) => c.map((x) => x.tokenIds)));
    },
  );
});
