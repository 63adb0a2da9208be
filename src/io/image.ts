import sharp, { type Metadata, type SharpOptions } from 'sharp';
import { DEFAULT_LIMITS } from '../core/defaults.js';
import { SampleError } from '../core/errors.js';
import type { RgbImage } from '../core/types.js';
import { type PixelBudget, processPixels } from './pixel-budget.js';

// libvips' operation cache keys on input buffers; scraped images are seen once, so it only costs memory.
sharp.cache(false);

export interface DecodedImage extends RgbImage {
  /** sharp's name for the container format (jpeg, png, webp, gif, tiff, …). */
  format: string;
  /** Size as stored in the file, before EXIF orientation (one frame for animations). */
  originalWidth: number;
  originalHeight: number;
}

/** Defaults: the run's (DEFAULT_LIMITS in core/defaults.ts). */
export interface DecodeLimits {
  /** Larger encoded inputs are rejected unread. */
  maxBytes?: number;
  /** Larger decoded images are rejected from their header. */
  maxPixels?: number;
  /** Decode time budget; 0 disables it. */
  timeoutMs?: number;
}

function classify(key: string, err: unknown): SampleError {
  if (err instanceof SampleError) return err;
  // libvips repeats its warnings over several lines; the first one names the problem.
  const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0];
  if (/pixel limit/i.test(msg))
    return new SampleError(key, 'too_large', `image exceeds the pixel limit (${msg})`);
  if (/timeout/i.test(msg)) return new SampleError(key, 'timeout', `image decode timed out (${msg})`);
  return new SampleError(key, 'undecodable', `cannot decode image: ${msg}`, { cause: err });
}

function withDeadline<T>(key: string, work: Promise<T>, timeoutMs: number): Promise<T> {
  if (timeoutMs <= 0) return work;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new SampleError(key, 'timeout', `image decode exceeded ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Encoded image bytes to 8-bit RGB, as PIL's `Image.open(...).convert('RGB')` sees them, plus EXIF
 * orientation: first frame only, palette expanded, grey replicated to 3 channels, 16-bit reduced to
 * 8-bit, CMYK converted to RGB with PIL's own formula, alpha discarded without compositing (PIL's
 * convert drops it too). Embedded ICC profiles are ignored because PIL, and so every BLIP checkpoint's
 * training data, ignores them. SVG is refused (PIL cannot open it, and rendering is unbounded work).
 * Any failure is a SampleError carrying `key`: too_large, timeout, or undecodable.
 */
export async function decodeImage(
  bytes: Buffer,
  key: string,
  limits: DecodeLimits = {},
): Promise<DecodedImage> {
  return withDecodedImage(bytes, key, limits, (image) => image);
}

/**
 * decodeImage, with the image's pixels held against `budget` (the process's by default) from
 * before the decode until `use` has finished with it: pass a `use` that keeps only what it needs
 * (a model's pixel tensor), so that the decoded RGB is never held outside the budget. The wait for
 * the budget is not part of the decode time budget.
 */
export async function withDecodedImage<T>(
  bytes: Buffer,
  key: string,
  limits: DecodeLimits,
  use: (image: DecodedImage) => T | Promise<T>,
  budget: PixelBudget = processPixels,
): Promise<T> {
  const maxBytes = limits.maxBytes ?? DEFAULT_LIMITS.maxBytes;
  const timeoutMs = limits.timeoutMs ?? DEFAULT_LIMITS.decodeTimeoutMs;
  if (bytes.length === 0) throw new SampleError(key, 'undecodable', 'image file is empty (0 bytes)');
  if (bytes.length > maxBytes) {
    throw new SampleError(
      key,
      'too_large',
      `image file is ${bytes.length} bytes, over the ${maxBytes}-byte limit`,
    );
  }
  const input: SharpOptions = {
    failOn: 'error',
    limitInputPixels: limits.maxPixels ?? DEFAULT_LIMITS.maxPixels,
    ignoreIcc: true,
    pages: 1,
    page: 0,
  };
  const header = await guarded(key, readHeader(bytes, key, input), timeoutMs);
  const release = await budget.acquire(header.width * (header.pageHeight ?? header.height));
  const decoding = decodePixels(bytes, key, input, header, timeoutMs);
  try {
    return await use(await guarded(key, decoding, timeoutMs));
  } finally {
    // A decode raced out by its deadline still holds its pixels inside libvips until it settles.
    void decoding.then(release, release);
  }
}

/** Runs `work` within the decode time budget, failures classified as SampleErrors. */
async function guarded<T>(key: string, work: Promise<T>, timeoutMs: number): Promise<T> {
  try {
    return await withDeadline(key, work, timeoutMs);
  } catch (err) {
    throw classify(key, err);
  } finally {
    // A raced-out decode still settles later; keep its rejection from surfacing as unhandled.
    work.catch(() => {});
  }
}

type ImageHeader = Metadata & { format: string; width: number; height: number };

async function readHeader(bytes: Buffer, key: string, input: SharpOptions): Promise<ImageHeader> {
  const meta = await sharp(bytes, input).metadata();
  if (!meta.format || !meta.width || !meta.height) {
    throw new SampleError(key, 'undecodable', 'image header has no format or size');
  }
  if (meta.format === 'svg') {
    throw new SampleError(key, 'undecodable', 'vector images (SVG) are not decoded');
  }
  return meta as ImageHeader;
}

async function decodePixels(
  bytes: Buffer,
  key: string,
  input: SharpOptions,
  meta: ImageHeader,
  timeoutMs: number,
): Promise<DecodedImage> {
  // CMYK stays CMYK through libvips so the conversion below can be PIL's, not an ICC transform.
  const cmyk = meta.space === 'cmyk';
  // A transparent GIF pixel is, to PIL, the palette colour of the transparent index; keep alpha to find them.
  const gifKey = meta.format === 'gif' ? gifTransparentColour(bytes) : null;
  let pipeline = sharp(bytes, input).rotate();
  if (cmyk) pipeline = pipeline.removeAlpha().pipelineColourspace('cmyk').toColourspace('cmyk');
  else if (gifKey) pipeline = pipeline.toColourspace('srgb').ensureAlpha();
  else pipeline = pipeline.removeAlpha().toColourspace('srgb');
  pipeline = pipeline.raw({ depth: 'uchar' });
  if (timeoutMs > 0) pipeline = pipeline.timeout({ seconds: Math.max(1, Math.ceil(timeoutMs / 1000)) });
  const { data, info } = await pipeline.toBuffer({ resolveWithObject: true });
  const pixels = info.width * info.height;
  let rgb: Uint8Array;
  if (cmyk && info.channels === 4) rgb = cmykToRgb(data, pixels);
  else if (gifKey && info.channels === 4) rgb = unkeyGif(data, pixels, gifKey);
  else rgb = toRgb(key, data, info.width, info.height, info.channels);
  return {
    width: info.width,
    height: info.height,
    data: rgb,
    format: meta.format,
    originalWidth: meta.width,
    originalHeight: meta.pageHeight ?? meta.height,
  };
}

/**
 * PIL's cmyk2rgb (what `convert('RGB')` does to a CMYK image): no colour management, each channel is
 * (255 - K) scaled by (255 - ink) with PIL's rounded divide by 255.
 */
function cmykToRgb(data: Buffer, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  const mulDiv255 = (a: number, b: number): number => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let p = 0; p < pixels; p++) {
    const nk = 255 - data[p * 4 + 3];
    for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.max(0, nk - mulDiv255(data[p * 4 + c], nk));
  }
  return out;
}

/**
 * The RGB palette entry of the first frame's transparent index, or null when the first frame has no
 * transparency (or the header cannot be walked: then sharp's decode stands as is).
 */
export function gifTransparentColour(b: Buffer): [number, number, number] | null {
  if (b.length < 13 || b.toString('latin1', 0, 3) !== 'GIF') return null;
  const flags = b[10];
  let pos = 13;
  let palette: Buffer | null = null;
  if (flags & 0x80) {
    const size = 3 * (1 << ((flags & 7) + 1));
    palette = b.subarray(pos, pos + size);
    pos += size;
  }
  let transparent = -1;
  while (pos < b.length) {
    const block = b[pos];
    if (block === 0x21) {
      const label = b[pos + 1];
      if (label === 0xf9 && pos + 6 < b.length && b[pos + 3] & 1) transparent = b[pos + 6];
      // Skip the extension's sub-blocks.
      pos += 2;
      while (pos < b.length && b[pos] !== 0) pos += b[pos] + 1;
      pos += 1;
    } else if (block === 0x2c) {
      if (pos + 9 >= b.length) return null;
      const local = b[pos + 9];
      if (local & 0x80) palette = b.subarray(pos + 10, pos + 10 + 3 * (1 << ((local & 7) + 1)));
      if (transparent < 0 || !palette || 3 * transparent + 2 >= palette.length) return null;
      return [palette[3 * transparent], palette[3 * transparent + 1], palette[3 * transparent + 2]];
    } else {
      return null;
    }
  }
  return null;
}

function unkeyGif(data: Buffer, pixels: number, colour: [number, number, number]): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const opaque = data[p * 4 + 3] !== 0;
    out[p * 3] = opaque ? data[p * 4] : colour[0];
    out[p * 3 + 1] = opaque ? data[p * 4 + 1] : colour[1];
    out[p * 3 + 2] = opaque ? data[p * 4 + 2] : colour[2];
  }
  return out;
}

/** sharp should already give 3 channels; anything else is reduced the way PIL's convert('RGB') would. */
function toRgb(key: string, data: Buffer, width: number, height: number, channels: number): Uint8Array {
  const n = width * height;
  if (data.length !== n * channels) {
    throw new SampleError(
      key,
      'undecodable',
      `decoder returned ${data.length} bytes for ${width}x${height}x${channels}`,
    );
  }
  if (channels === 3) return new Uint8Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const g = channels < 3;
    out[i * 3] = data[i * channels];
    out[i * 3 + 1] = data[i * channels + (g ? 0 : 1)];
    out[i * 3 + 2] = data[i * channels + (g ? 0 : 2)];
  }
  return out;
}
