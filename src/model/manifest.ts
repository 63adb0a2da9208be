import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
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

/** The description of a converted model directory, written by `capfilt models import`. */
export interface ModelManifest {
  format: 'capfilt-blip-onnx';
  formatVersion: 1;
  kind: ModelKind;
  architecture: string;
  vision: VisionConfig;
  text: TextConfig;
  imageTextHiddenSize: number;
  imageTokens: number;
  image: ImageSpec;
  specialIds: SpecialIds;
  precision: 'fp32' | 'fp16';
  /** ONNX files by role (vision, cross_kv, decoder, itm, itc_text), relative to the model dir. */
  graphs: Record<string, string>;
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
  return m;
}
