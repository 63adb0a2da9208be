import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelError } from '../../core/errors.js';
import type { WeightMap } from '../tensor.js';
import { readWholeFile } from './binary.js';
import { parseSafetensors } from './safetensors.js';
import { parseTorchBin } from './torch-bin.js';

export interface LoadedCheckpoint {
  weights: WeightMap;
  /** Path of the weights file that was read. */
  file: string;
  /** Hex sha256 of that file. */
  sha256: string;
}

/** Weight files in order of preference: safetensors needs no unpickling. */
export const WEIGHT_FILES = ['model.safetensors', 'pytorch_model.bin'] as const;

/** Buffers, not parameters: old checkpoints persist `*.embeddings.position_ids` (int64 arange). */
export function isDroppedKey(key: string): boolean {
  return key.endsWith('.position_ids');
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Which weights file `loadCheckpoint(dir)` would read, or undefined when there is none. */
export async function findWeightsFile(dir: string): Promise<string | undefined> {
  for (const name of WEIGHT_FILES) {
    const path = join(dir, name);
    if (await isFile(path)) return path;
  }
  return undefined;
}

/**
 * Load a Hugging Face checkpoint directory's weights as float32: model.safetensors when present,
 * else pytorch_model.bin (through the restricted unpickler).
 */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const file = await findWeightsFile(dir);
  if (!file) {
    const sharded =
      (await isFile(join(dir, 'model.safetensors.index.json'))) ||
      (await isFile(join(dir, 'pytorch_model.bin.index.json')));
    throw new ModelError(
      sharded
        ? `${dir}: sharded checkpoints are not supported (BLIP checkpoints are single files)`
        : `${dir}: no model.safetensors or pytorch_model.bin`,
    );
  }
  // One read serves both the parse and the hash (F32 weights are views into this buffer anyway).
  const buf = await readWholeFile(file);
  const sha256 = createHash('sha256').update(buf).digest('hex');
  const weights = file.endsWith('.safetensors')
    ? parseSafetensors(buf, file, { skip: isDroppedKey })
    : parseTorchBin(buf, file, { skip: isDroppedKey });
  return { weights, file, sha256 };
}
