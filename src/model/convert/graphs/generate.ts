import type { BlipConfig, TextConfig } from '../../config.js';
import { GRAPHS, IO } from '../../io-names.js';
import type { WeightMap } from '../../tensor.js';
import { DType, type GraphBuilder } from '../onnx/graph-builder.js';
import { Blocks } from './blocks.js';
import { DECODER, lmHead } from './captioner.js';
import {
  greedyToken,
  type Processing,
  processLogits,
  type SamplingType,
  sampledToken,
  type Warping,
} from './logits.js';
import { crossKeyValues, type LayerCache, positionsAfter, textTransformer } from './text.js';
import { type GraphVariant, startGraph } from './variant.js';
import { visionEncoder } from './vision.js';

export type GenerateMode = 'greedy' | 'sample';

/** The arithmetic of in-graph sampling for a set of graphs: WebGPU has no float64. */
export function samplingType(variant: GraphVariant): SamplingType {
  return variant.portable ? 'float32' : 'float64';
}

/** What a decoding step carries to the next. */
interface DecodeState {
  /** int64 [R, S]: the ids this step feeds (the prompt first, then the last token). */
  feed: string;
  /** int64 [R, L]: every id so far. */
  seq: string;
  /** bool [R]: the row has emitted the end token. */
  finished: string;
  past: LayerCache[];
}

/** What every step reads from outside: the images' cross keys/values and the sampling inputs. */
interface StepContext {
  text: TextConfig;
  eosId: number;
  /** Per layer, [images, H, N, hd]: each image's rows attend to them in place (no copy per row). */
  cross: LayerCache[];
  /** int64 [3]: [images, -1, D], the queries of an image's rows as one sequence. */
  grouped: string;
  processing: Processing;
  warping?: Warping & { uniforms: string; type: SamplingType };
}

/**
 * One step for every row: decoder with its self-attention cache, LM head, logits processing, next
 * token. A row that ended emits the end token again (what the host loop feeds it).
 */
function decodeStep(
  b: Blocks,
  ctx: StepContext,
  s: DecodeState,
  /** int64 scalar, the step's index; asked for only when sampling (unused constants are noise). */
  iteration: () => string,
  causal = true,
): DecodeState {
  const { g } = b;
  const ungrouped = g.op('Concat', [g.op('Shape', [s.feed]), g.constInt64([ctx.text.hiddenSize])], {
    axis: 0,
  });
  const { hidden, present } = textTransformer(b, ctx.text, s.feed, {
    prefix: DECODER,
    positions: positionsAfter(b, s.feed, s.past[0].key),
    causal,
    past: s.past,
    cross: ctx.cross,
    crossGroups: { grouped: ctx.grouped, ungrouped },
  });
  const logits = lmHead(
    b,
    ctx.text.layerNormEps,
    g.op('Gather', [hidden, g.constInt64([-1], [])], { axis: 1 }),
  );
  const x = processLogits(g, logits, s.seq, ctx.processing);
  const w = ctx.warping;
  const next = w
    ? sampledToken(g, x, w, w.type, g.op('Gather', [w.uniforms, iteration()], { axis: 1 }))
    : greedyToken(g, x);
  const eos = g.constInt64([ctx.eosId], []);
  const emitted = g.op('Where', [s.finished, eos, next]);
  const column = g.op('Unsqueeze', [emitted, g.constInt64([1])]);
  return {
    feed: column,
    seq: g.op('Concat', [s.seq, column], { axis: 1 }),
    finished: g.op('Or', [s.finished, g.op('Equal', [emitted, eos])]),
    past: present.map((c) => ({ key: c.key, value: c.value })),
  };
}

/** bool scalar: some row is still going. */
function anyGoing(g: GraphBuilder, finished: string): string {
  const going = g.op('Cast', [g.op('Not', [finished])], { to: DType.int64 });
  return g.op('Greater', [g.op('ReduceSum', [going], { keepdims: 0 }), g.constInt64([0], [])]);
}

/**
 * Decoding as an ONNX Loop of at most max_new_tokens iterations that stops once every row has
 * ended; the caches are loop-carried and grow by one position per iteration, the cross
 * keys/values and weights are read from the outer graph. Returns the final sequences.
 */
function loopDecode(
  g: GraphBuilder,
  weights: WeightMap,
  ctx: StepContext,
  start: DecodeState,
  maxNew: string,
  portable: boolean,
): string {
  const body = g.subgraph('decode_step');
  const hd = ctx.text.hiddenSize / ctx.text.numHeads;
  const kv = (part: string) =>
    body.input(body.fresh(part), body.computeType, ['rows', ctx.text.numHeads, 'past', hd]);
  const iteration = body.input(body.fresh('iteration'), 'int64', []);
  body.input(body.fresh('condition'), 'bool', []);
  const state: DecodeState = {
    feed: body.input(body.fresh('feed'), 'int64', ['rows', 'new']),
    seq: body.input(body.fresh('sequence'), 'int64', ['rows', 'length']),
    finished: body.input(body.fresh('finished'), 'bool', ['rows']),
    past: start.past.map(() => ({ key: kv('past_key'), value: kv('past_value') })),
  };
  const next = decodeStep(new Blocks(body, weights, { portable }), ctx, state, () => iteration);
  body.output(anyGoing(body, next.finished), body.fresh('going'), 'bool', []);
  body.output(next.feed, body.fresh('feed_out'), 'int64', ['rows', 1]);
  body.output(next.seq, body.fresh('sequence_out'), 'int64', ['rows', 'length_out']);
  body.output(next.finished, body.fresh('finished_out'), 'bool', ['rows']);
  for (const c of next.past) {
    body.output(c.key, body.fresh('present_key'), body.computeType, ['rows', ctx.text.numHeads, 'total', hd]);
    body.output(c.value, body.fresh('present_value'), body.computeType, [
      'rows',
      ctx.text.numHeads,
      'total',
      hd,
    ]);
  }
  const always = g.op('Cast', [g.constInt64([1], [])], { to: DType.bool });
  const carried = [start.feed, start.seq, start.finished, ...start.past.flatMap((c) => [c.key, c.value])];
  return g.loop(maxNew, always, carried, body)[1];
}

/**
 * Decoding as `steps` inlined steps (WebGPU: no Loop kernel there, and a CPU-side Loop would copy
 * the caches across devices every step). Every step runs; the result is cut to max_new_tokens.
 */
function unrolledDecode(
  b: Blocks,
  ctx: StepContext,
  start: DecodeState,
  maxNew: string,
  steps: number,
): string {
  const { g } = b;
  let state = start;
  // After the prompt each step feeds one id, which may see every cached position: no causal mask.
  for (let i = 0; i < steps; i++) state = decodeStep(b, ctx, state, () => g.constInt64([i], []), i === 0);
  const end = g.op('Add', [
    g.op('Shape', [start.seq], { start: 1, end: 2 }),
    g.op('Unsqueeze', [maxNew, g.constInt64([0])]),
  ]);
  return g.op('Slice', [state.seq, g.constInt64([0]), end, g.constInt64([1])]);
}

/** The state before the first step: the prompt, nothing finished, empty caches [R, H, 0, hd]. */
function startState(b: Blocks, text: TextConfig, prompt: string): DecodeState {
  const { g } = b;
  const rows = g.op('Shape', [prompt], { start: 0, end: 1 });
  const hd = text.hiddenSize / text.numHeads;
  const empty = b.compute(
    g.op('ConstantOfShape', [g.op('Concat', [rows, g.constInt64([text.numHeads, 0, hd])], { axis: 0 })]),
  );
  const finished = g.op('Cast', [g.op('ConstantOfShape', [rows])], { to: DType.bool });
  return {
    feed: prompt,
    seq: prompt,
    finished,
    past: Array.from({ length: text.numLayers }, () => ({ key: empty, value: empty })),
  };
}

/**
 * The whole captioner in one graph: pixels → ViT → cross keys/values of every text layer (once per
 * image) → decoding with the self-attention cache and logits processing in the graph → token ids.
 * Only pixels, prompt ids, the sampling parameters and uniforms go in, only ids come out.
 */
export function buildGenerateGraph(
  cfg: BlipConfig,
  weights: WeightMap,
  variant: GraphVariant,
  mode: GenerateMode,
): GraphBuilder {
  const name = mode === 'greedy' ? GRAPHS.generateGreedy : GRAPHS.generateSample;
  const { g, b } = startGraph(name, weights, variant);
  const { vision: v, text } = cfg;
  const type = samplingType(variant);
  const pixels = g.input(IO.pixelValues, 'float32', ['images', v.numChannels, v.imageSize, v.imageSize]);
  const prompt = g.input(IO.promptIds, 'int64', ['rows', 'prompt']);
  const maxNew = g.input(IO.maxNewTokens, 'int64', []);
  const vocab = g.op('Range', [
    g.constInt64([0], []),
    g.constInt64([text.vocabSize], []),
    g.constInt64([1], []),
  ]);
  const ctx: StepContext = {
    text,
    eosId: text.sepTokenId,
    cross: crossKeyValues(b, text, visionEncoder(b, v, pixels), DECODER),
    grouped: g.op('Concat', [g.op('Shape', [pixels], { end: 1 }), g.constInt64([-1, text.hiddenSize])], {
      axis: 0,
    }),
    processing: {
      type,
      repetitionPenalty: g.input(IO.repetitionPenalty, type, [], false),
      minLength: g.input(IO.minLength, 'int64', []),
      isEos: g.op('Equal', [vocab, g.constInt64([text.sepTokenId], [])]),
    },
  };
  if (mode === 'sample') {
    ctx.warping = {
      type,
      uniforms: g.input(IO.uniforms, type, ['rows', 'steps'], false),
      temperature: g.input(IO.temperature, type, [], false),
      topK: g.input(IO.topK, 'int64', []),
      topPThreshold: g.input(IO.topPThreshold, type, [], false),
    };
  }
  const start = startState(b, text, prompt);
  const sequences =
    variant.unrolledSteps > 0
      ? unrolledDecode(b, ctx, start, maxNew, variant.unrolledSteps)
      : loopDecode(g, weights, ctx, start, maxNew, variant.portable);
  g.output(sequences, IO.sequences, 'int64', ['rows', 'length']);
  return g;
}
