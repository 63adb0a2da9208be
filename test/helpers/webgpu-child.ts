/**
 * WebGPU scenarios, each run in its own process by test/helpers/webgpu.ts:
 *   node --import tsx test/helpers/webgpu-child.ts <scenario> '<json argument>'
 * Prints one JSON line (the scenario's result) on stdout. The comparisons with the CPU happen in
 * the test process; this side only runs capfilt's engines and graphs on `--device webgpu`.
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { Captioner } from '../../src/captioner/captioner.js';
import type { DecodingOptions } from '../../src/core/types.js';
import { Filter } from '../../src/filter/filter.js';
import { readManifest } from '../../src/model/manifest.js';
import { resolveDevice } from '../../src/model/runtime/runtime.js';
import { decoderStepLogits } from './decoder-steps.js';
import { fixtureBin } from './models.js';
import { drawInGraph } from './sampling.js';

interface Arg {
  captioner: string;
  filter: string;
  /** Fixture images (names of IMAGE_NAMES), in order; their keys are their names. */
  images: string[];
  texts?: string[][];
  decoding?: DecodingOptions;
  firstToken?: 'enc' | 'cls';
  tokens?: number[];
  steps?: number;
  /** scores: only the whole-graph call. */
  wholeGraphOnly?: boolean;
  /** caption: the whole-graph captioner (default) or the host loop. */
  wholeGraph?: boolean;
  /** sampler: a graph of sampling.ts's samplerGraph (float32) and how many tokens to draw. */
  sampler?: string;
  draws?: number;
}

const pixelsOf = (image: string) => fixtureBin(`pixel_values_${image}_png.bin`);
const fromJson = (a: Arg) => a.images.map((key) => ({ key, pixels: pixelsOf(key) }));

const scenarios: Record<string, (a: Arg) => Promise<unknown>> = {
  async probe() {
    return resolveDevice({ device: 'webgpu' });
  },

  /** The error `--device webgpu` gives (the parent hides the Vulkan driver). */
  async deviceError(a) {
    return Captioner.load(a.captioner, { device: 'webgpu' }).then(
      () => ({ message: null }),
      (err: Error) => ({ name: err.constructor.name, message: err.message }),
    );
  },

  async embeddings(a) {
    const captioner = await Captioner.load(a.captioner, {
      device: 'webgpu',
      wholeGraph: a.wholeGraph ?? true,
    });
    const filter = await Filter.load(a.filter, { device: 'webgpu' });
    const c = await captioner.encode(fromJson(a));
    const f = await filter.encode(fromJson(a));
    await Promise.all([captioner.close(), filter.close()]);
    return { captioner: [...c.imageEmbeds], filter: [...f.imageEmbeds], imageFeat: [...f.imageFeat] };
  },

  /** Logits of the first steps of one image, through the WebGPU set's vision, cross_kv and decoder. */
  async stepLogits(a) {
    const m = await readManifest(a.captioner);
    const open = (role: string) =>
      ort.InferenceSession.create(join(a.captioner, m.webgpu.graphs[role] as string), {
        executionProviders: ['webgpu'],
        logSeverityLevel: 3,
      });
    const logits = await decoderStepLogits(
      m,
      open,
      pixelsOf(a.images[0]),
      a.tokens as number[],
      a.steps as number,
    );
    return logits.map((l) => [...l]);
  },

  /** Scores from the whole-graph call and from the ITM/ITC graphs called one by one. */
  async scores(a) {
    const samples = fromJson(a).map((s, i) => ({ ...s, texts: (a.texts as string[][])[i] }));
    const result: Record<string, unknown> = {};
    for (const wholeGraph of a.wholeGraphOnly ? [true] : [true, false]) {
      const filter = await Filter.load(a.filter, { device: 'webgpu', wholeGraph });
      const scores = await filter.score(samples, { firstToken: a.firstToken ?? 'enc', maxTextLength: 35 });
      result[wholeGraph ? 'inGraph' : 'onHost'] = scores;
      if (wholeGraph) result.traffic = filter.traffic;
      await filter.close();
    }
    return result;
  },

  /** Token → count of the in-graph sampler's draws (float32: WebGPU has no float64). */
  async sampler(a) {
    return [...(await drawInGraph(a.sampler as string, 'float32', a.draws as number, 'webgpu'))];
  },

  async caption(a) {
    const captioner = await Captioner.load(a.captioner, {
      device: 'webgpu',
      wholeGraph: a.wholeGraph ?? true,
    });
    const captions = await captioner.caption(fromJson(a), a.decoding as DecodingOptions);
    const traffic = captioner.traffic;
    await captioner.close();
    return { tokenIds: captions.map((c) => c.map((x) => x.tokenIds)), traffic };
  },
};

const [name, json] = process.argv.slice(2);
const scenario = scenarios[name];
if (!scenario) throw new Error(`unknown WebGPU scenario ${name}`);
const result = await scenario(json ? (JSON.parse(json) as Arg) : ({} as Arg));
process.stdout.write(`${JSON.stringify(result)}\n`);
