import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SamplingType } from '../../../../src/model/convert/graphs/logits.js';
import {
  chiSquare,
  drawInGraph,
  expectedDistribution,
  NUCLEUS_CASE,
  samplerGraph,
} from '../../../helpers/sampling.js';
import { INSTALL_HINT, inWebGpuChild, probeWebGpu, SKIP_ENV } from '../../../helpers/webgpu.js';

// The whole-graph captioner's logits processing and draw, alone in a graph, 20k rows of one
// next-token case: the tokens must follow the distribution transformers' rules give (the chi-square
// test the host sampler passes, test/captioner/logits.test.ts), in float64 (CPU, CUDA) and in float32
// (WebGPU: its TopK, softmaxes, cumulative sums and masks run on the provider; onnxruntime keeps
// some int64 reductions and shape ops on the CPU).
const DRAWS = 20_000;
const { vocab, logits, seq, params } = NUCLEUS_CASE;
const expected = expectedDistribution(logits, seq, params);
const work = mkdtempSync(join(tmpdir(), 'capfilt-sampler-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function saveSampler(type: SamplingType): string {
  const file = join(work, `sampler-${type}.onnx`);
  samplerGraph(type, vocab, params.eosId).save(file);
  return file;
}

function expectNucleus(counts: Map<number, number>): void {
  const { chi2, critical, outside } = chiSquare(counts, expected, DRAWS);
  expect(outside, 'tokens outside the nucleus').toEqual([]);
  expect(expected.size).toBeGreaterThan(10);
  expect(chi2).toBeLessThan(critical);
}

describe('in-graph nucleus sampling follows the truncated, penalised softmax (chi-square, 20k draws)', () => {
  for (const type of ['float64', 'float32'] as const) {
    it(`${type} on the CPU provider`, async () => {
      expectNucleus(await drawInGraph(saveSampler(type), type, DRAWS, 'cpu'));
    });
  }

  const probe = probeWebGpu();
  it.skipIf(!probe.available && process.env[SKIP_ENV] === '1')('float32 on the WebGPU provider', async () => {
    if (!probe.available) throw new Error(`${INSTALL_HINT} (${probe.reason})`);
    const { result } = await inWebGpuChild<[number, number][]>('sampler', {
      captioner: '',
      filter: '',
      images: [],
      sampler: saveSampler('float32'),
      draws: DRAWS,
    });
    expectNucleus(new Map(result));
  });

  it('a sampler without the repetition penalty fails the same test', async () => {
    const counts = await drawInGraph(saveSampler('float64'), 'float64', DRAWS, 'cpu');
    const wrong = expectedDistribution(logits, [], { ...params, repetitionPenalty: 1 });
    expect(chiSquare(counts, wrong, DRAWS).chi2).toBeGreaterThan(chiSquare(counts, wrong, DRAWS).critical);
  });
});
