import { ModelError } from '../core/errors.js';
import type { ImageSpec } from './manifest.js';

/**
 * A model's image preprocessing as its preprocessor_config.json states it. Read at import
 * (model/convert) and applied at run time (model/runtime/preprocess.ts), so it lives here.
 */

/** OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, BlipImageProcessor's defaults. */
const DEFAULT_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const DEFAULT_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** PIL.Image.Resampling numbering. */
const PIL_RESAMPLE: Record<number, ImageSpec['resample']> = { 0: 'nearest', 2: 'bilinear', 3: 'bicubic' };

type Json = Record<string, unknown>;

function triple(v: unknown, key: string, fallback: [number, number, number]): [number, number, number] {
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'number') return [v, v, v];
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    return [v[0], v[1], v[2]];
  }
  throw new ModelError(`preprocessor_config.json: ${key} must be a number or 3 numbers`);
}

/** Reads preprocessor_config.json with BlipImageProcessor's defaults (384 px unless told otherwise). */
export function imageSpecFromPreprocessorConfig(json: unknown, defaultSize = 384): ImageSpec {
  const cfg: Json = json !== null && typeof json === 'object' ? (json as Json) : {};
  let height = defaultSize;
  let width = defaultSize;
  const size = cfg['size'];
  if (typeof size === 'number') {
    height = width = size;
  } else if (size !== undefined && size !== null) {
    const s = size as Json;
    if (typeof s['height'] === 'number' && typeof s['width'] === 'number') {
      height = s['height'];
      width = s['width'];
    } else {
      throw new ModelError(
        `preprocessor_config.json: size must be an integer or {height, width}, got ${JSON.stringify(size)}`,
      );
    }
  }
  if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
    throw new ModelError(`preprocessor_config.json: bad size ${width}x${height}`);
  }
  if (cfg['do_resize'] === false) {
    throw new ModelError(
      'preprocessor_config.json: do_resize=false is not supported (the vision model needs a fixed size)',
    );
  }
  const resampleRaw = cfg['resample'] ?? 3;
  const resample = typeof resampleRaw === 'number' ? PIL_RESAMPLE[resampleRaw] : undefined;
  if (!resample)
    throw new ModelError(`preprocessor_config.json: unsupported resample ${JSON.stringify(resampleRaw)}`);
  const doRescale = cfg['do_rescale'] !== false;
  const factor = cfg['rescale_factor'] ?? 1 / 255;
  if (typeof factor !== 'number' || !Number.isFinite(factor)) {
    throw new ModelError('preprocessor_config.json: rescale_factor must be a number');
  }
  const doNormalize = cfg['do_normalize'] !== false;
  return {
    height,
    width,
    mean: doNormalize ? triple(cfg['image_mean'], 'image_mean', DEFAULT_MEAN) : [0, 0, 0],
    std: doNormalize ? triple(cfg['image_std'], 'image_std', DEFAULT_STD) : [1, 1, 1],
    rescaleFactor: doRescale ? factor : 1,
    resample,
  };
}
