/** A float32 tensor held in host memory, row-major (C order). */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Checkpoint weights by their Hugging Face state-dict name. */
export type WeightMap = Map<string, HostTensor>;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
