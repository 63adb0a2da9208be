import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TextScore } from '../../../src/core/types.js';
import { Filter } from '../../../src/filter/filter.js';
import { readManifest } from '../../../src/model/manifest.js';
import { expectGreedyWhereMarginsAllow, GREEDY_PROMPT } from '../../helpers/fp16.js';
import {
  fixtureBin,
  IMAGE_NAMES,
  importTinyModels,
  maxAbsDiff,
  REFERENCE,
  type TinyModels,
} from '../../helpers/models.js';
import { INSTALL_HINT, inWebGpuChild, probeWebGpu, SKIP_ENV } from '../../helpers/webgpu.js';

// `models import --precision fp16` on WebGPU computes in fp16 (LayerNorm statistics, softmax, ITC
// normalisation and logits in fp32), on whatever Vulkan device the machine has (lavapipe in CI:
// it offers shader-f16). Compared with fp32 on the CPU execution provider.
const probe = probeWebGpu();
const skip = !probe.available && process.env[SKIP_ENV] === '1';

const images = [...IMAGE_NAMES];
describe.skipIf(skip)('--device webgpu with fp16 compute (tiny fixture)', () => {
  let fp32: TinyModels;
  let fp16: TinyModels;
  beforeAll(async () => {
    if (!probe.available) throw new Error(`${INSTALL_HINT} (${probe.reason})`);
    fp32 = await importTinyModels();
    fp16 = await importTinyModels({ precision: 'fp16' });
  });
  afterAll(() => {
    fp32?.dispose();
    fp16?.dispose();
  });

  it('ITM within 2e-2 and ITC within 2e-2 of fp32 on the CPU, one whole-graph call', async () => {
    expect((await readManifest(fp16.filter)).webgpu.computeType).toBe('float16');
    const texts = images.map((image) => REFERENCE.filter.pairs[image].map((p: { text: string }) => p.text));
    const { result } = await inWebGpuChild<{ inGraph: TextScore[][] }>('scores', {
      captioner: fp16.captioner,
      filter: fp16.filter,
      images,
      texts,
      wholeGraphOnly: true,
    });
    const cpu = await Filter.load(fp32.filter);
    try {
      const reference = await cpu.score(
        images.map((key, i) => ({ key, pixels: fixtureBin(`pixel_values_${key}_png.bin`), texts: texts[i] })),
        { firstToken: 'enc', maxTextLength: 35 },
      );
      const flat = (s: TextScore[][], k: keyof TextScore) => s.flat().map((x) => x[k]);
      expect(maxAbsDiff(flat(result.inGraph, 'itm'), flat(reference, 'itm'))).toBeLessThan(2e-2);
      expect(maxAbsDiff(flat(result.inGraph, 'itc'), flat(reference, 'itc'))).toBeLessThan(2e-2);
    } finally {
      await cpu.close();
    }
  });

  it('greedy tokens equal to fp32 (Hugging Face) on the images whose margins allow it', async () => {
    const { result } = await inWebGpuChild<{ tokenIds: number[][][] }>('caption', {
      captioner: fp16.captioner,
      filter: fp16.filter,
      images,
      decoding: GREEDY_PROMPT,
      // The host loop: its graphs compile in a fraction of the unrolled captioner's time on a cold
      // lavapipe (same blocks, same fp16 numerics).
      wholeGraph: false,
    });
    expectGreedyWhereMarginsAllow(result.tokenIds);
  });
});
