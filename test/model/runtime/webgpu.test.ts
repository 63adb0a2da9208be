import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../../../src/core/defaults.js';
import type { DecodingOptions, TextScore } from '../../../src/core/types.js';
import { Filter } from '../../../src/filter/filter.js';
import { readManifest } from '../../../src/model/manifest.js';
import { decoderStepLogits } from '../../helpers/decoder-steps.js';
import {
  fixtureBin,
  IMAGE_NAMES,
  importTinyModels,
  maxAbsDiff,
  REFERENCE,
  type TinyModels,
} from '../../helpers/models.js';
import { INSTALL_HINT, inWebGpuChild, probeWebGpu, SKIP_ENV } from '../../helpers/webgpu.js';

type Traffic = { bytesIn: number; bytesOut: number; images: number };

// Parity of `--device webgpu` with the CPU execution provider on the tiny fixture, on whatever
// Vulkan device the machine has (lavapipe in CI). Each WebGPU run is a child process (see
// test/helpers/webgpu.ts); the CPU side runs here.
const probe = probeWebGpu();
const skip = !probe.available && process.env[SKIP_ENV] === '1';
if (skip) process.stderr.write(`WebGPU tests skipped (${SKIP_ENV}=1): ${probe.reason}\n`);

const images = [...IMAGE_NAMES];
const samples = images.map((key) => ({ key, pixels: fixtureBin(`pixel_values_${key}_png.bin`) }));
const textsOf = (image: string): string[] =>
  REFERENCE.filter.pairs[image].map((p: { text: string }) => p.text);
const generation = REFERENCE.captioner.generation;

function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tolerance: number, what: string): void {
  expect(a.length, what).toBe(b.length);
  expect(maxAbsDiff(a, b), what).toBeLessThan(tolerance);
}

describe('--device webgpu without a Vulkan driver', () => {
  let models: TinyModels;
  beforeAll(async () => {
    models = await importTinyModels();
  });
  afterAll(() => models?.dispose());

  it('fails at load, naming the Vulkan packages', async () => {
    const { result } = await inWebGpuChild<{ name: string; message: string }>(
      'deviceError',
      { captioner: models.captioner },
      { VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json' },
    );
    expect(result.name).toBe('ModelError');
    expect(result.message).toMatch(/cannot run on WebGPU: .*Failed to get a WebGPU adapter/);
    expect(result.message).toMatch(/mesa-vulkan-drivers libvulkan1/);
  });
});

describe.skipIf(skip)('--device webgpu matches the CPU execution provider (tiny fixture, fp32)', () => {
  let models: TinyModels;
  let captioner: Captioner;
  let filter: Filter;
  const arg = () => ({ captioner: models.captioner, filter: models.filter, images });
  beforeAll(async () => {
    if (!probe.available) throw new Error(`${INSTALL_HINT} (${probe.reason})`);
    // 20 unrolled steps: the greedy reference's length (fewer shaders to compile on a cold CI).
    models = await importTinyModels({ webgpuSteps: 20 });
    captioner = await Captioner.load(models.captioner, { batchSize: 6 });
    filter = await Filter.load(models.filter, { batchSize: 6 });
  });
  afterAll(async () => {
    await captioner?.close();
    await filter?.close();
    models?.dispose();
  });

  it('image embeddings and ITC image features within 1e-4', async () => {
    const { result, stderr } = await inWebGpuChild<Record<string, number[]>>('embeddings', arg());
    expect(stderr).toEqual([]);
    expectClose(result.captioner, (await captioner.encode(samples)).imageEmbeds, 1e-4, 'captioner');
    const cpu = await filter.encode(samples);
    expectClose(result.filter, cpu.imageEmbeds, 1e-4, 'filter');
    expectClose(result.imageFeat, cpu.imageFeat, 1e-4, 'image_feat');
  });

  it('decoder step logits within 1e-4', async () => {
    const sequence: number[] = generation.greedy_prompt.results['0_gradient'].sequence;
    const { result } = await inWebGpuChild<number[][]>('stepLogits', {
      ...arg(),
      images: ['0_gradient'],
      tokens: sequence,
      steps: 3,
    });
    const m = await readManifest(models.captioner);
    const cpu = await decoderStepLogits(
      m,
      (role) => ort.InferenceSession.create(`${models.captioner}/${m.graphs[role]}`),
      samples[0].pixels,
      sequence,
      3,
    );
    cpu.forEach((l, step) => {
      expectClose(result[step], l, 1e-4, `step ${step}`);
    });
  });

  for (const firstToken of ['enc', 'cls'] as const) {
    it(`ITM and ITC within 1e-4, ${firstToken} first, whole-graph and one graph at a time`, async () => {
      const texts = images.map(textsOf);
      const { result } = await inWebGpuChild<{
        inGraph: TextScore[][];
        onHost: TextScore[][];
        traffic: Traffic;
      }>('scores', { ...arg(), texts, firstToken });
      const cpu = await filter.score(
        samples.map((s, i) => ({ ...s, texts: texts[i] })),
        { firstToken, maxTextLength: 35 },
      );
      const flat = (s: TextScore[][], k: keyof TextScore) => s.flat().map((x) => x[k]);
      for (const [path, scores] of Object.entries({ inGraph: result.inGraph, onHost: result.onHost })) {
        expectClose(flat(scores, 'itm'), flat(cpu, 'itm'), 1e-4, `${path} itm`);
        expectClose(flat(scores, 'itc'), flat(cpu, 'itc'), 1e-4, `${path} itc`);
      }
      // The whole-graph call: pixels and int64 ids/masks in, 12 bytes per text (2 logits, 1 cosine) out.
      const pixels = images.length * 3 * 64 * 64 * 4;
      expect(result.traffic.bytesOut).toBe(texts.flat().length * 12);
      expect((result.traffic.bytesIn - pixels) % 8).toBe(0);
    });
  }

  const cases: [string, Partial<DecodingOptions>][] = [
    ['greedy_prompt', { strategy: 'greedy', maxLength: 24, minLength: 0, repetitionPenalty: 1 }],
    [
      'beam3_prompt',
      { strategy: 'beam', numBeams: 3, maxLength: 20, minLength: 5, repetitionPenalty: 1, numCaptions: 1 },
    ],
  ];
  for (const [name, options] of cases) {
    it(`${name}: the same token ids as the CPU (and Hugging Face)`, async () => {
      const decoding = { ...CAPFILT_DECODING, ...options, prompt: 'a picture of ' };
      const { result } = await inWebGpuChild<{ tokenIds: number[][][]; traffic: Traffic }>('caption', {
        ...arg(),
        decoding,
      });
      images.forEach((image, i) => {
        expect(result.tokenIds[i][0], image).toEqual(generation[name].results[image].sequence);
      });
      if (name === 'greedy_prompt') {
        // One whole-graph call: pixels, prompts, max_new_tokens, min_length (int64) and the float32
        // repetition penalty in, the token ids out.
        const pixels = images.length * 3 * 64 * 64 * 4;
        expect(result.traffic.bytesIn).toBe(pixels + images.length * 4 * 8 + 8 + 8 + 4);
        expect(result.traffic.bytesOut).toBe(images.length * 24 * 8);
      }
    });
  }
});

describe.skipIf(skip)('--device webgpu: sampled captions in the whole graph (tiny fixture, 3 steps)', () => {
  let models: TinyModels;
  beforeAll(async () => {
    if (!probe.available) throw new Error(`${INSTALL_HINT} (${probe.reason})`);
    // 3 unrolled steps: the sampled graph's shaders take minutes to compile for 20 on a cold lavapipe.
    models = await importTinyModels({ webgpuSteps: 3 });
  });
  afterAll(() => models?.dispose());

  it('draws the same tokens as the CPU for the same seeds (float32 sampling there, float64 here)', async () => {
    const decoding = { ...CAPFILT_DECODING, numCaptions: 2, maxLength: 7, minLength: 0, seed: 5 };
    const { result } = await inWebGpuChild<{ tokenIds: number[][][]; traffic: Traffic }>('caption', {
      captioner: models.captioner,
      filter: models.filter,
      images,
      decoding,
    });
    // One whole-graph call of 12 rows: pixels, prompt ids, 3 float32 uniforms per row and the
    // parameters (max_new_tokens, min_length, top_k int64; penalty, temperature, 1 − top_p float32).
    const rows = images.length * 2;
    const pixels = images.length * 3 * 64 * 64 * 4;
    expect(result.traffic.bytesIn).toBe(pixels + rows * 4 * 8 + rows * 3 * 4 + 3 * 8 + 3 * 4);
    const cpu = await Captioner.load(models.captioner, { batchSize: 6 });
    try {
      const expected = await cpu.caption(samples, decoding);
      expect(result.tokenIds).toEqual(expected.map((c) => c.map((x) => x.tokenIds)));
    } finally {
      await cpu.close();
    }
  });
});
