import protobuf from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { sessionOptions } from '../src/model/runtime/runtime.js';
import { type Timing, timeRuns } from './timing.js';

const { onnx } = protobuf;

/**
 * What this machine can do, measured through onnxruntime-node itself with the threads capfilt
 * runs with: the fp32 GEMM ceiling (the rate the stages are divided by) and the memory read
 * bandwidth (the roofline of the decoder, which reads all its weights and every row's cross
 * keys/values for one token per row). The machine is shared and noisy, so the stage benchmark
 * measures both again right before each stage.
 */

export interface GemmShape {
  m: number;
  k: number;
  n: number;
  label: string;
}

export interface Ceiling {
  /** GFLOP/s: the best median wall-clock rate over the shapes. */
  gflops: number;
  /** GFLOP per CPU-second (all threads), best run: barely moved by other processes. */
  cpuGflops: number;
  /** Median GFLOP/s of each shape. */
  shapes: { label: string; m: number; k: number; n: number; median: number; min: number }[];
}

/**
 * The ViT-B MLP GEMMs (fc1 768→3072, fc2 3072→768) at 2 images of 577 tokens (M = 1154), as
 * capfilt's vision encoder runs them; the fastest GEMMs MLAS runs on CPUs measured so far.
 */
export const CEILING_SHAPES: GemmShape[] = [
  { m: 1154, k: 768, n: 3072, label: 'fc1 768→3072' },
  { m: 1154, k: 3072, n: 768, label: 'fc2 3072→768' },
];

function valueInfo(name: string, dims: (number | string)[]) {
  const dim = dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1, shape: { dim } } } });
}

function model(
  node: InstanceType<typeof onnx.NodeProto>,
  inputs: unknown[],
  initializers: unknown[],
): Uint8Array {
  const graph = onnx.GraphProto.create({
    name: 'bench',
    node: [node],
    input: inputs as never[],
    output: [valueInfo('y', [])],
    initializer: initializers as never[],
  });
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph }),
  ).finish();
}

/** Y = X·W with W a constant initializer, so MLAS pre-packs it as it does capfilt's weights. */
function matmulModel(s: GemmShape): Uint8Array {
  const w = new Float32Array(s.k * s.n).map((_, i) => (((i * 7919) % 1000) / 1000 - 0.5) * 0.05);
  const weight = onnx.TensorProto.create({
    name: 'w',
    dims: [s.k, s.n],
    dataType: 1,
    rawData: new Uint8Array(w.buffer),
  });
  const node = onnx.NodeProto.create({ opType: 'MatMul', input: ['x', 'w'], output: ['y'] });
  return model(node, [valueInfo('x', ['m', s.k])], [weight]);
}

async function open(bytes: Uint8Array, threads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(
    bytes,
    sessionOptions({ kind: 'cpu', deviceId: 0 }, { intraOpThreads: threads }),
  );
}

/** Time one GEMM shape: `runs` timed runs after one warm-up, output preallocated (no page faults). */
export async function timeGemm(s: GemmShape, threads: number, runs: number): Promise<Timing> {
  const session = await open(matmulModel(s), threads);
  try {
    const x = new Float32Array(s.m * s.k).map((_, i) => ((i * 131) % 1000) / 1000 - 0.5);
    const feeds = { x: new ort.Tensor('float32', x, [s.m, s.k]) };
    const fetches = { y: new ort.Tensor('float32', new Float32Array(s.m * s.n), [s.m, s.n]) };
    return await timeRuns(() => session.run(feeds, fetches), runs, 1);
  } finally {
    await session.release();
  }
}

/** The fp32 GEMM ceiling: best median GFLOP/s over CEILING_SHAPES (≈ 0.3 s with 3 runs each). */
export async function measureCeiling(threads: number, runs = 3): Promise<Ceiling> {
  const shapes: Ceiling['shapes'] = [];
  let cpuGflops = 0;
  for (const s of CEILING_SHAPES) {
    const gflop = (2 * s.m * s.k * s.n) / 1e9;
    const t = await timeGemm(s, threads, runs);
    shapes.push({ ...s, median: gflop / (t.wallMs.median / 1000), min: gflop / (t.wallMs.max / 1000) });
    cpuGflops = Math.max(cpuGflops, gflop / (t.cpuMs.min / 1000));
  }
  return { gflops: Math.max(...shapes.map((s) => s.median)), cpuGflops, shapes };
}

/**
 * Memory read bandwidth in GB/s: ReduceSum over 256 MiB (8× a 32 MiB L3), best of `runs`. It
 * matches a hand-written AVX read loop on the machines measured (within ~10 %).
 */
export async function measureReadBandwidth(threads: number, runs = 4): Promise<number> {
  const node = onnx.NodeProto.create({
    opType: 'ReduceSum',
    input: ['x'],
    output: ['y'],
    attribute: [onnx.AttributeProto.create({ name: 'keepdims', type: 2, i: 0 })],
  });
  const session = await open(model(node, [valueInfo('x', ['r', 'c'])], []), threads);
  try {
    const n = 64 * 1024 * 1024;
    const feeds = { x: new ort.Tensor('float32', new Float32Array(n).fill(1), [1024, n / 1024]) };
    const t = await timeRuns(() => session.run(feeds), runs, 1);
    return (n * 4) / (t.wallMs.min / 1000) / 1e9;
  } finally {
    await session.release();
  }
}
