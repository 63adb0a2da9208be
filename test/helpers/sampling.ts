import * as ort from 'onnxruntime-node';
import type { SamplingParams } from '../../src/captioner/logits.js';
import { captionRng, Rng } from '../../src/captioner/rng.js';
import { processLogits, type SamplingType, sampledToken } from '../../src/model/convert/graphs/logits.js';
import { DType, GraphBuilder } from '../../src/model/convert/onnx/graph-builder.js';

/**
 * One next-token case for the statistical tests of nucleus sampling (host and in-graph): a
 * 400-token vocabulary, an end token that would dominate if min length did not ban it, and a seen
 * id near the top that the repetition penalty must push down.
 */
export const NUCLEUS_CASE = (() => {
  const vocab = 400;
  const gen = new Rng(new Uint32Array([1, 2, 3, 4]));
  const logits = Array.from({ length: vocab }, () => gen.nextFloat() * 6 - 3);
  logits[5] = 10;
  logits[42] = 2.9;
  const params: SamplingParams = {
    repetitionPenalty: 1.1,
    minLength: 10,
    eosId: 5,
    temperature: 1,
    topK: 50,
    topP: 0.9,
  };
  return { vocab, logits, seq: [7, 11, 11, 42, 3], params };
})();

/** An independent oracle: HF's rules written out with descending sorts, from first principles. */
export function expectedDistribution(
  logits: number[],
  seq: number[],
  p: SamplingParams,
): Map<number, number> {
  const v = logits.map((x, i) => {
    let y = x;
    if (p.repetitionPenalty !== 1 && seq.includes(i))
      y = y < 0 ? y * p.repetitionPenalty : y / p.repetitionPenalty;
    if (i === p.eosId && seq.length < p.minLength) y = Number.NEGATIVE_INFINITY;
    return y / p.temperature;
  });
  const sorted = v.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0]);
  const kth = sorted[p.topK - 1][0];
  const topk = sorted.filter(([x]) => x >= kth && x > Number.NEGATIVE_INFINITY);
  const max = topk[0][0];
  const z = topk.reduce((a, [x]) => a + Math.exp(x - max), 0);
  const probs = topk.map(([x, i]) => [i, Math.exp(x - max) / z] as const);
  // Nucleus: most likely first, keep until the mass reaches top_p (the crossing token is kept).
  const kept: (readonly [number, number])[] = [];
  let mass = 0;
  for (const pr of probs) {
    kept.push(pr);
    mass += pr[1];
    if (mass >= p.topP) break;
  }
  const total = kept.reduce((a, [, q]) => a + q, 0);
  return new Map(kept.map(([i, q]) => [i, q / total]));
}

/**
 * Pearson's chi-square of observed token counts against an expected distribution, and its 99.9 %
 * critical value (Wilson–Hilferty approximation) for expected.size − 1 degrees of freedom.
 */
export function chiSquare(
  counts: ReadonlyMap<number, number>,
  expected: ReadonlyMap<number, number>,
  draws: number,
): { chi2: number; critical: number; outside: number[] } {
  let chi2 = 0;
  for (const [t, q] of expected) {
    const e = q * draws;
    const o = counts.get(t) ?? 0;
    chi2 += ((o - e) * (o - e)) / e;
  }
  const df = expected.size - 1;
  const z = 3.09;
  const critical = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
  return { chi2, critical, outside: [...counts.keys()].filter((t) => !expected.has(t)) };
}

/**
 * The in-graph logits processing and draw of the whole-graph captioner (model/convert/graphs/
 * logits.ts) as a graph of its own: logits [rows, V], seq [rows, L] and one uniform per row in,
 * one token per row out; the sampling scalars as the captioner feeds them.
 */
export function samplerGraph(type: SamplingType, vocab: number, eosId: number): GraphBuilder {
  const g = new GraphBuilder('sampler');
  const logits = g.input('logits', 'float32', ['rows', vocab]);
  const seq = g.input('seq', 'int64', ['rows', 'length']);
  const u = g.input('u', type, ['rows'], false);
  const ids = g.op('Range', [g.constInt64([0], []), g.constInt64([vocab], []), g.constInt64([1], [])]);
  const x = processLogits(g, logits, seq, {
    type,
    repetitionPenalty: g.input('repetition_penalty', type, [], false),
    minLength: g.input('min_length', 'int64', []),
    isEos: g.op('Equal', [ids, g.constInt64([eosId], [])]),
  });
  const token = sampledToken(
    g,
    x,
    {
      temperature: g.input('temperature', type, [], false),
      topK: g.input('top_k', 'int64', []),
      topPThreshold: g.input('top_p_threshold', type, [], false),
    },
    type,
    u,
  );
  g.output(g.op('Cast', [token], { to: DType.int64 }), 'token', 'int64', ['rows']);
  return g;
}

/**
 * `draws` tokens from the sampler graph saved at `file` for NUCLEUS_CASE, one row per draw with
 * uniforms from a caption stream, on the given execution provider; token → count.
 */
export async function drawInGraph(
  file: string,
  type: SamplingType,
  draws: number,
  provider: 'cpu' | 'webgpu',
): Promise<Map<number, number>> {
  const { vocab, logits, seq, params } = NUCLEUS_CASE;
  const rng = captionRng(7, 'in-graph', 0);
  const u = Float64Array.from({ length: draws }, () => rng.nextFloat());
  const float = (values: ArrayLike<number>, dims: number[]) =>
    type === 'float64'
      ? new ort.Tensor('float64', Float64Array.from(values), dims)
      : new ort.Tensor('float32', Float32Array.from(values), dims);
  const rows = new Float32Array(draws * vocab);
  for (let r = 0; r < draws; r++) rows.set(logits, r * vocab);
  const seqs = new BigInt64Array(draws * seq.length);
  for (let r = 0; r < draws; r++) seqs.set(seq.map(BigInt), r * seq.length);
  const session = await ort.InferenceSession.create(file, { executionProviders: [provider] });
  try {
    const out = await session.run({
      logits: new ort.Tensor('float32', rows, [draws, vocab]),
      seq: new ort.Tensor('int64', seqs, [draws, seq.length]),
      u: float(u, [draws]),
      repetition_penalty: float([params.repetitionPenalty], []),
      min_length: new ort.Tensor('int64', BigInt64Array.from([BigInt(params.minLength)]), []),
      temperature: float([params.temperature], []),
      top_k: new ort.Tensor('int64', BigInt64Array.from([BigInt(params.topK)]), []),
      top_p_threshold: float([1 - params.topP], []),
    });
    const counts = new Map<number, number>();
    for (const t of out.token.data as BigInt64Array) counts.set(Number(t), (counts.get(Number(t)) ?? 0) + 1);
    return counts;
  } finally {
    await session.release();
  }
}
