import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../../src/captioner/captioner.js';
import { CAPFILT_DECODING } from '../../../src/core/defaults.js';
import type { DecodingOptions, TextScore } from '../../../src/core/types.js';
import { Filter } from '../../../src/filter/filter.js';
import { readManifest } from '../../../src/model/manifest.js';
import { graphSet } from '../../../src/model/runtime/runtime.js';
import { expectGreedyWhereMarginsAllow, GREEDY_PROMPT } from '../../helpers/fp16.js';
import {
  cudaSetAs,
  fixtureBin,
  IMAGE_NAMES,
  importTinyModels,
  maxAbsDiff,
  REFERENCE,
  type TinyModels,
} from '../../helpers/models.js';
import { readGraph } from '../../helpers/onnx-graph.js';
import { INSTALL_HINT, inWebGpuChild, probeWebGpu, SKIP_ENV } from '../../helpers/webgpu.js';

// `models import --precision fp16` writes a CUDA set that computes in float16 with the fused ops and
// Loop decoding of the CPU set. No CUDA device is here, so it is checked three ways: its graphs feed
// float16 weights to every MatMul but the output heads'; on the CPU provider (which upcasts what it
// has no float16 kernel for) it scores and captions like fp32; and its captioner graphs run on the
// WebGPU provider here, computing in float16, with fp32's greedy tokens where the margins allow.
const images = [...IMAGE_NAMES];
const samples = images.map((key) => ({ key, pixels: fixtureBin(`pixel_values_${key}_png.bin`) }));
const texts = images.map((image) => REFERENCE.filter.pairs[image].map((p: { text: string }) => p.text));
const scoring = { firstToken: 'enc' as const, maxTextLength: 35 };
/** The weights the heads read in float32 (their outputs are the results). */
const HEADS = /^(lm_head|itm_head|vision_proj|text_proj)\./;

describe('the CUDA graph set', () => {
  let fp32: TinyModels;
  let fp16: TinyModels;
  beforeAll(async () => {
    fp32 = await importTinyModels();
    fp16 = await importTinyModels({ precision: 'fp16' });
  });
  afterAll(() => {
    fp32?.dispose();
    fp16?.dispose();
  });

  it('is the CPU set in an fp32 import, its own float16 set in an fp16 import', async () => {
    const cuda = { kind: 'cuda' as const, deviceId: 0 };
    const m32 = await readManifest(fp32.captioner);
    expect(m32.cuda).toEqual({ graphs: m32.graphs, computeType: 'float32' });
    expect(graphSet(m32, cuda)).toEqual(m32.graphs);
    for (const dir of [fp16.captioner, fp16.filter]) {
      const m16 = await readManifest(dir);
      expect(m16.cuda.computeType).toBe('float16');
      expect(Object.keys(m16.cuda.graphs).sort()).toEqual(Object.keys(m16.graphs).sort());
      expect(graphSet(m16, cuda)).toEqual(m16.cuda.graphs);
      expect(graphSet(m16, { kind: 'cpu', deviceId: 0 })).toEqual(m16.graphs);
    }
  });

  it('computes every MatMul but the heads in float16, reading the weights the CPU set widens', async () => {
    for (const dir of [fp16.captioner, fp16.filter]) {
      const m = await readManifest(dir);
      for (const role of Object.keys(m.graphs)) {
        // It reads the CPU set's stored float16 weights; it writes no weight file of its own.
        expect(existsSync(`${dir}/${m.cuda.graphs[role]}.data`), role).toBe(false);
        const cudaWeights = matMulWeights(`${dir}/${m.cuda.graphs[role]}`);
        const cpuWeights = matMulWeights(`${dir}/${m.graphs[role]}`);
        expect(cudaWeights.length, role).toBeGreaterThan(0);
        for (const w of cudaWeights) {
          if (HEADS.test(w.name)) expect(w.type, `${role} ${w.name}`).toBe('widened');
          else expect(w.type, `${role} ${w.name}`).toBe('float16');
        }
        expect(new Set(cpuWeights.map((w) => w.type)), role).toEqual(new Set(['widened']));
      }
    }
  });

  it('on the CPU provider: ITM and ITC within 2e-2 of fp32, graphs one by one and whole', async () => {
    const reference = await scoreWith(fp32.filter, false);
    const cudaSet = cudaSetAs(fp16.filter, 'graphs');
    for (const wholeGraph of [false, true]) {
      const scores = await scoreWith(cudaSet, wholeGraph);
      const flat = (s: TextScore[][], k: keyof TextScore) => s.flat().map((x) => x[k]);
      expect(maxAbsDiff(flat(scores, 'itm'), flat(reference, 'itm')), `whole ${wholeGraph}`).toBeLessThan(
        2e-2,
      );
      expect(maxAbsDiff(flat(scores, 'itc'), flat(reference, 'itc')), `whole ${wholeGraph}`).toBeLessThan(
        2e-2,
      );
    }
  });

  it('on the CPU provider: greedy tokens of fp32 where margins allow; Loop and host loop agree', async () => {
    const cudaSet = cudaSetAs(fp16.captioner, 'graphs');
    const sampled = { ...CAPFILT_DECODING, numCaptions: 2, seed: 3 };
    const results: Record<string, { greedy: number[][][]; sampled: number[][][] }> = {};
    for (const wholeGraph of [true, false]) {
      const captioner = await Captioner.load(cudaSet, { wholeGraph, batchSize: 6 });
      try {
        const ids = async (o: DecodingOptions) =>
          (await captioner.caption(samples, o)).map((c) => c.map((x) => x.tokenIds));
        results[String(wholeGraph)] = { greedy: await ids(GREEDY_PROMPT), sampled: await ids(sampled) };
      } finally {
        await captioner.close();
      }
    }
    expectGreedyWhereMarginsAllow(results.true.greedy);
    expect(results.true.greedy).toEqual(results.false.greedy);
    // The CPU provider upcasts the float16 ops it has no kernel for and drops cast pairs where it
    // can, which rounds a Loop body and the step graphs slightly differently; a draw that lands
    // within that rounding of a top-p boundary may differ. Wiring errors would change most captions.
    const same = results.true.sampled
      .flat()
      .filter((ids, i) => sameIds(ids, results.false.sampled.flat()[i]));
    expect(same.length).toBeGreaterThanOrEqual(10);
  });

  const probe = probeWebGpu();
  const skipWebGpu = !probe.available && process.env[SKIP_ENV] === '1';
  it.skipIf(skipWebGpu)(
    'on the WebGPU provider, in float16 with the fused ops: greedy tokens of fp32 where margins allow',
    async () => {
      if (!probe.available) throw new Error(`${INSTALL_HINT} (${probe.reason})`);
      // The host loop: vision, cross K/V and decoder of the CUDA set (the WebGPU provider has no Loop).
      // The fixture's sequences stay under 32 query positions, where WebGPU's fused attention is right.
      const { result } = await inWebGpuChild<{ tokenIds: number[][][] }>('caption', {
        captioner: cudaSetAs(fp16.captioner, 'webgpu'),
        filter: fp16.filter,
        images,
        decoding: GREEDY_PROMPT,
        wholeGraph: false,
      });
      expectGreedyWhereMarginsAllow(result.tokenIds);
    },
  );
});

const sameIds = (a: number[], b: number[]) => JSON.stringify(a) === JSON.stringify(b);

async function scoreWith(dir: string, wholeGraph: boolean): Promise<TextScore[][]> {
  const filter = await Filter.load(dir, { wholeGraph });
  try {
    return await filter.score(
      samples.map((s, i) => ({ ...s, texts: texts[i] })),
      scoring,
    );
  } finally {
    await filter.close();
  }
}

/**
 * The constant second inputs of a graph's top-level MatMuls: 'float16' when the stored weight is
 * used as is, 'widened' when it goes through the Cast to float32 the builder names `<weight>_float32`.
 */
function matMulWeights(file: string): { name: string; type: 'float16' | 'widened' }[] {
  const { nodes, initializers } = readGraph(file);
  const FLOAT16 = 10;
  const out: { name: string; type: 'float16' | 'widened' }[] = [];
  for (const node of nodes.filter((n) => n.opType === 'MatMul')) {
    const w = node.inputs[1];
    if (initializers.get(w) === FLOAT16) out.push({ name: w, type: 'float16' });
    const widened = w.replace(/_float32$/, '');
    if (widened !== w && initializers.get(widened) === FLOAT16) out.push({ name: widened, type: 'widened' });
  }
  return out;
}
