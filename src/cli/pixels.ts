import { UsageError } from '../core/errors.js';
import type { RgbImage } from '../core/types.js';
import { decodeImage } from '../io/image.js';
import { parseNpy } from '../io/npy.js';
import { Storage } from '../io/storage/storage.js';
import type { ModelManifest } from '../model/manifest.js';

interface PixelSource {
  pixels(image: RgbImage): Float32Array;
  readonly manifest: ModelManifest;
}

/** A file named on the command line; a missing one is a NotFoundError (one line, exit 2), not a stack trace. */
export async function readInput(location: string): Promise<Buffer> {
  const storage = new Storage();
  try {
    return await storage.read(location);
  } finally {
    storage.close();
  }
}

/**
 * An input's pixel tensor for `engine`: an image file (decoded and preprocessed like the pipeline
 * does) or a .npy of already-preprocessed float32 pixels, [3,H,W] or [1,3,H,W], which lets a
 * conversion be checked against PyTorch independently of resizing.
 */
export async function pixelsOf(input: string, engine: PixelSource): Promise<Float32Array> {
  if (input.toLowerCase().endsWith('.npy')) {
    const arr = parseNpy(await readInput(input), input);
    const { imageSize, numChannels } = engine.manifest.vision;
    const want = [numChannels, imageSize, imageSize];
    const shape = arr.shape.length === 4 && arr.shape[0] === 1 ? arr.shape.slice(1) : arr.shape;
    if (shape.join(',') !== want.join(',')) {
      throw new UsageError(`${input}: shape [${arr.shape}] is not [${want}] or [1,${want}]`);
    }
    return arr.data;
  }
  return engine.pixels(await decodeImage(await readInput(input), input));
}

/** One JSON value per line on stdout. */
export const printLine = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
