import type { WeightMap } from '../../tensor.js';
import { type FloatType, GraphBuilder, WeightStore } from '../onnx/graph-builder.js';
import { Blocks } from './blocks.js';

/** How one set of a model's graphs is written: for which execution providers, in which types. */
export interface GraphVariant {
  /** Storage type of the weights (the import's precision). */
  weightType: FloatType;
  /** Type the graphs compute in: float16 only for the CUDA and WebGPU sets of an fp16 import. */
  computeType: FloatType;
  /** Portable attention and LayerNorm for the WebGPU execution provider (see BlockOptions). */
  portable: boolean;
  /**
   * Decoding steps a whole-graph captioner inlines one after the other; 0 writes an ONNX Loop
   * (any step count, early exit). WebGPU has no Loop kernel: onnxruntime runs the Loop on the CPU
   * and copies the loop-carried caches between devices on every step, so its set is unrolled.
   */
  unrolledSteps: number;
  /** The model's weights, written once for all of its graphs. */
  store: WeightStore;
}

/** The CPU/CUDA set: fused ops, float32 compute, Loop decoding. */
export function fusedVariant(weightType: FloatType, store = new WeightStore()): GraphVariant {
  return { weightType, computeType: 'float32', portable: false, unrolledSteps: 0, store };
}

/** The CUDA set of an fp16 import: the fused set on the stored float16 weights, computing in float16. */
export function halfFusedVariant(store: WeightStore): GraphVariant {
  return { ...fusedVariant('float16', store), computeType: 'float16' };
}

/** A graph of `variant` and the blocks that write into it. */
export function startGraph(
  name: string,
  weights: WeightMap,
  variant: GraphVariant,
): { g: GraphBuilder; b: Blocks } {
  const g = new GraphBuilder(name, {
    weightType: variant.weightType,
    computeType: variant.computeType,
    store: variant.store,
  });
  return { g, b: new Blocks(g, weights, { portable: variant.portable }) };
}
