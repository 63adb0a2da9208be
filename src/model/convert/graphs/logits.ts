import { DType, type DTypeName, type GraphBuilder } from '../onnx/graph-builder.js';

/**
 * Hugging Face's logits processing inside a graph, one step for every row at once, written to pick
 * the same tokens as captioner/logits.ts does on the host: repetition penalty over the ids so far,
 * the min-length ban of the end token, then greedy argmax, or temperature, top-k, top-p (ascending
 * sort, as transformers 4.40) and a draw with a uniform the host drew from the caption's stream.
 *
 * `type` is the arithmetic of the sampling parameters, the softmaxes and cumulative sums: float64
 * reproduces the host's float64 arithmetic (CPU, CUDA); WebGPU has no float64 and uses float32,
 * whose tokens agree in distribution (chi-square test: test/model/convert/graphs/logits.test.ts).
 */
export type SamplingType = 'float64' | 'float32';

export interface Processing {
  type: SamplingType;
  /** Scalar, `type`. */
  repetitionPenalty: string;
  /** int64 scalar: the whole sequence (prompt included) must reach this length before the end token. */
  minLength: string;
  /** bool [V]: true at the end token (computed once, outside any loop). */
  isEos: string;
}

export interface Warping {
  /** Scalar, `type`. */
  temperature: string;
  /** int64 scalar: k; the vocabulary size turns top-k off. */
  topK: string;
  /** Scalar, `type`: 1 − top_p (tokens whose ascending cumulative probability stays at or below it go). */
  topPThreshold: string;
}

const NEG_INF = Number.NEGATIVE_INFINITY;
/** Candidates kept beyond k, so that ties at the k-th value survive as on the host (up to this many). */
export const TIE_MARGIN = 8;

/** `x` cast to `type`. */
function as(g: GraphBuilder, x: string, type: DTypeName): string {
  return g.op('Cast', [x], { to: DType[type] });
}

/**
 * Processors on logits [R, V] (float32) given the ids so far, seq [R, L]: a seen id's logit is
 * divided by the penalty (multiplied when negative), in `type` then rounded to float32 as the host
 * does; the end token is banned while L < min length.
 */
export function processLogits(g: GraphBuilder, logits: string, seq: string, p: Processing): string {
  const seen = as(g, g.op('GatherElements', [logits, seq], { axis: 1 }), p.type);
  const zero = g.op('CastLike', [g.constFloat([0], []), seen]);
  const penalised = g.op('Where', [
    g.op('Less', [seen, zero]),
    g.op('Mul', [seen, p.repetitionPenalty]),
    g.op('Div', [seen, p.repetitionPenalty]),
  ]);
  // Duplicate ids in seq write the same value: ScatterElements stays deterministic.
  const x = g.op('ScatterElements', [logits, seq, as(g, penalised, 'float32')], { axis: 1 });
  const short = g.op('Less', [g.op('Shape', [seq], { start: 1, end: 2 }), p.minLength]);
  return g.op('Where', [g.op('And', [short, p.isEos]), g.constFloat([NEG_INF], []), x]);
}

/** int64 [R]: the first largest logit, as the host's argmax. */
export function greedyToken(g: GraphBuilder, x: string): string {
  return g.op('ArgMax', [x], { axis: 1, keepdims: 0 });
}

/**
 * int64 [R]: a draw from temperature → top-k → top-p of x [R, V], with uniforms u [R] (`type`).
 * Only the top-k candidates can survive, so everything after one TopK is O(k): no vocabulary-wide
 * sort or cumulative sum (quadratic and seconds long on the WebGPU provider).
 */
export function sampledToken(g: GraphBuilder, x: string, w: Warping, type: SamplingType, u: string): string {
  const warmed = as(g, g.op('Div', [as(g, x, type), w.temperature]), 'float32');
  const vocab = g.op('Shape', [x], { start: 1, end: 2 });
  const kk = g.op('Min', [
    g.op('Add', [g.op('Unsqueeze', [w.topK, g.constInt64([0])]), g.constInt64([TIE_MARGIN])]),
    vocab,
  ]);
  // Descending, ties by lower id (ONNX TopK); values below the k-th are out, ties at it stay.
  const [desc, descIds] = g.node('TopK', [warmed, kk], 2, { axis: -1, largest: 1, sorted: 1 });
  const kth = g.op('Gather', [desc, g.op('Sub', [w.topK, g.constInt64([1], [])])], { axis: 1 });
  const topK = g.op('Where', [
    g.op('Less', [desc, g.op('Unsqueeze', [kth, g.constInt64([1])])]),
    g.constFloat([NEG_INF], []),
    desc,
  ]);
  // Ascending (ties: lower position = lower id first, the host's sort), cumulative mass, drop while ≤ 1 − p.
  const [asc, ascPos] = g.node('TopK', [topK, kk], 2, { axis: -1, largest: 0, sorted: 1 });
  const ascIds = g.op('GatherElements', [descIds, ascPos], { axis: 1 });
  const mass = g.op('CumSum', [g.op('Softmax', [as(g, asc, type)], { axis: -1 }), g.constInt64([1], [])]);
  const positions = g.op('Range', [g.constInt64([0], []), g.op('Squeeze', [kk]), g.constInt64([1], [])]);
  const notLast = g.op('Less', [positions, g.op('Sub', [g.op('Squeeze', [kk]), g.constInt64([1], [])])]);
  const drop = g.op('And', [g.op('LessOrEqual', [mass, w.topPThreshold]), notLast]);
  const kept = g.op('Where', [drop, g.constFloat([NEG_INF], []), asc]);
  // The host draws among the survivors in id order: sort the candidates by id (exact in float32
  // below 2^24), then the first whose cumulative probability exceeds u.
  const [byIdValues, byId] = g.node('TopK', [as(g, ascIds, 'float32'), kk], 2, {
    axis: -1,
    largest: 0,
    sorted: 1,
  });
  const probs = g.op('Softmax', [as(g, g.op('GatherElements', [kept, byId], { axis: 1 }), type)], {
    axis: -1,
  });
  const position = firstAbove(g, probs, u, positions);
  return g.op('Squeeze', [
    g.op('GatherElements', [as(g, byIdValues, 'int64'), position], { axis: 1 }),
    g.constInt64([1]),
  ]);
}

/**
 * int64 [R, 1]: per row, the first position whose cumulative probability exceeds u, or the last
 * position of non-zero probability when rounding leaves u above the total (the host's drawToken).
 */
function firstAbove(g: GraphBuilder, probs: string, u: string, positions: string): string {
  const cumulative = g.op('CumSum', [probs, g.constInt64([1], [])]);
  const atOrBelow = g.op(
    'Cast',
    [g.op('LessOrEqual', [cumulative, g.op('Unsqueeze', [u, g.constInt64([1])])])],
    {
      to: DType.int64,
    },
  );
  const below = g.op('ReduceSum', [atOrBelow, g.constInt64([1])], { keepdims: 1 });
  const alive = g.op('Cast', [g.op('Greater', [probs, g.op('CastLike', [g.constFloat([0], []), probs])])], {
    to: DType.int64,
  });
  const lastAlive = g.op('ReduceMax', [g.op('Mul', [alive, positions])], { axes: [1], keepdims: 1 });
  return g.op('Min', [below, lastAlive]);
}
