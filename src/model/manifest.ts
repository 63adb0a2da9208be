import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ModelError } from '../core/errors.js';
import type { ModelKind, TextConfig, VisionConfig } from './config.js';

/** How an image becomes this model's pixel tensor (from preprocessor_config.json). */
export interface ImageSpec {
  height: number;
  width: number;
  mean: [number, number, number];
  std: [number, number, number];
  rescaleFactor: number;
  /** PIL resample filter the processor names; BLIP uses 3 (bicubic). */
  resample: 'bicubic' | 'bilinear' | 'nearest';
}

/** BLIP's special token ids; [DEC] and [ENC] are absent from the hub tokenizer and come from the config. */
export interface SpecialIds {
  pad: number;
  unk: number;
  cls: number;
  sep: number;
  mask: number;
  dec: number;
  enc: number;
}

/**
 * The version of the graphs' contract with the engines; raised when a graph's inputs or outputs
 * change meaning. 2: itm takes its texts image-major, k per image, without image_index. 3: the
 * WebGPU set (`webgpu`). 4: the CUDA set (`cuda`).
 */
export const MANIFEST_FORMAT_VERSION = 4;

/**
 * The graphs the CUDA execution provider runs: fused onnxruntime ops and ONNX Loop decoding like the
 * CPU set. For an fp16 import they compute in float16 (the output heads, the ITC normalisation and
 * the logits processing in float32; LayerNorm and attention are onnxruntime's float16 kernels);
 * otherwise they are the CPU set's files.
 */
export interface CudaGraphs {
  graphs: Record<string, string>;
  computeType: 'float32' | 'float16';
}

/**
 * The graphs the WebGPU execution provider runs: portable attention and LayerNorm (onnxruntime
 * 1.30's WebGPU MultiHeadAttention is wrong for 32+ query positions), float16 compute for an fp16
 * import, an unrolled whole-graph captioner of `unrolledSteps` decoding steps. They read the
 * weights of the CPU/CUDA graphs (no copies).
 */
export interface WebGpuGraphs {
  graphs: Record<string, string>;
  computeType: 'float32' | 'float16';
  unrolledSteps: number;
}

/**
 * An int8 filter's host-path graphs in fp32 (`models import --recheck-margin`): an image with a
 * text whose int8 ITM probability lies within `margin` of the decision threshold is scored again
 * with them, so that the decisions near the threshold are fp32's.
 */
export interface RecheckGraphs {
  margin: number;
  graphs: Record<string, string>;
}

/** Weight precisions an import can write. */
export const PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** How an int8 model was quantized (model/convert/quantize.ts), recorded in its manifest. */
export interface Quantization {
  op: string;
  weights: string;
  activations: string;
  /** Weights matching this pattern stayed fp32. */
  keptFp32: string;
  /** The graphs (roles) that were quantized; the others are fp32. */
  graphs: string[];
}

/** The description of a converted model directory, written by `capfilt models import`. */
export interface ModelManifest {
  format: 'capfilt-blip-onnx';
  formatVersion: typeof MANIFEST_FORMAT_VERSION;
  kind: ModelKind;
  architecture: string;
  vision: VisionConfig;
  text: TextConfig;
  imageTextHiddenSize: number;
  imageTokens: number;
  image: ImageSpec;
  specialIds: SpecialIds;
  precision: Precision;
  /** int8 only: how the CPU set was quantized. */
  quantization?: Quantization;
  /** int8 filters imported with a recheck margin: their fp32 graphs for texts near the threshold. */
  recheck?: RecheckGraphs;
  /**
   * ONNX files by role (vision, cross_kv, decoder, itm, itc_text, and the whole-graph calls),
   * relative to the model dir: the CPU set (fused onnxruntime ops, float32 compute).
   */
  graphs: Record<string, string>;
  /** The CUDA set. */
  cuda: CudaGraphs;
  /** The WebGPU set (none in an int8 model, which runs on the CPU only). */
  webgpu: WebGpuGraphs;
  source: { dir: string; weightsFile: string; sha256: string; name?: string };
  capfiltVersion: string;
  createdAt: string;
}

export async function readManifest(dir: string): Promise<ModelManifest> {
  let raw: string;
  try {
    raw = await readFile(join(dir, 'manifest.json'), 'utf8');
  } catch (err) {
    throw new ModelError(
      `${dir} is not a converted capfilt model (no manifest.json); run capfilt models import`,
      {
        cause: err,
      },
    );
  }
  const m = JSON.parse(raw) as ModelManifest;
  if (m.format !== 'capfilt-blip-onnx')
    throw new ModelError(`${dir}/manifest.json: unknown format ${m.format}`);
  if (m.formatVersion !== MANIFEST_FORMAT_VERSION) {
    throw new ModelError(
      `${dir} was converted by another capfilt version (graph format ${m.formatVersion}, this one reads ${MANIFEST_FORMAT_VERSION}); convert it again with capfilt models import`,
    );
  }
  return m;
}

/** True when `dir` holds a model this capfilt reads (caches convert again otherwise). */
export function isCurrentModelDir(dir: string): boolean {
  try {
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Partial<ModelManifest>;
    return m.format === 'capfilt-blip-onnx' && m.formatVersion === MANIFEST_FORMAT_VERSION;
  } catch {
    return false;
  }
}

/** The id records name a model by: the name given at import (e.g. the hub repo), else its folder's name. */
export function modelIdOf(dir: string, manifest: ModelManifest): string {
  return manifest.source.name ?? basename(dir);
}
