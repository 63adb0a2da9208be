import type { RgbImage } from '../../core/types.js';
import type { ImageSpec } from '../manifest.js';

/**
 * Hugging Face BlipImageProcessor (slow, PIL) in TypeScript: PIL resize on uint8 (Pillow 9.4's
 * ImagingResample, fixed-point, two separable passes), then rescale (float64 product cast to float32)
 * and normalise (float32, as numpy computes it), CHW. Bit-exact on the same RGB bytes.
 */

interface FilterDef {
  support: number;
  fn: (x: number) => number;
}

const BICUBIC: FilterDef = {
  support: 2,
  // Keys' cubic convolution with a = -0.5, written in Pillow's Horner form so doubles round identically.
  fn: (x) => {
    const a = -0.5;
    const ax = x < 0 ? -x : x;
    if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
    if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
    return 0;
  },
};

const BILINEAR: FilterDef = {
  support: 1,
  fn: (x) => {
    const ax = x < 0 ? -x : x;
    return ax < 1 ? 1 - ax : 0;
  },
};

const PRECISION_BITS = 32 - 8 - 2;

interface Coeffs {
  /** Taps per output sample (the stride of `k`). */
  ksize: number;
  /** Per output sample: first input index and tap count. */
  bounds: Int32Array;
  /** Fixed-point weights, ksize per output sample. */
  k: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for box (0, inSize). */
function precomputeCoeffs(inSize: number, outSize: number, filter: FilterDef): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const k = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const v = filter.fn((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? w[x] / ww : w[x];
      const scaled = v * (1 << PRECISION_BITS);
      k[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + scaled) : Math.trunc(0.5 + scaled);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, k };
}

/** Pillow's clip8: arithmetic shift out the fraction, clamp to a byte. */
function clip8(v: number): number {
  const s = v >> PRECISION_BITS;
  return Math.min(Math.max(s, 0), 255);
}

/** One horizontal pass over rows [offset, offset + outH) of an RGB (3-byte) image. */
function resampleHorizontal(
  src: Uint8Array,
  srcW: number,
  offset: number,
  outW: number,
  outH: number,
  c: Coeffs,
): Uint8Array {
  const out = new Uint8Array(outW * outH * 3);
  const half = 1 << (PRECISION_BITS - 1);
  const { bounds, k, ksize } = c;
  for (let yy = 0; yy < outH; yy++) {
    const row = (yy + offset) * srcW * 3;
    let o = yy * outW * 3;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2];
      const xmax = bounds[xx * 2 + 1];
      const kb = xx * ksize;
      let s0 = half;
      let s1 = half;
      let s2 = half;
      let p = row + xmin * 3;
      for (let x = 0; x < xmax; x++, p += 3) {
        const kv = k[kb + x];
        // Sums stay well inside int32, as Pillow's do (two spare bits), so | 0 is exact.
        s0 = (s0 + src[p] * kv) | 0;
        s1 = (s1 + src[p + 1] * kv) | 0;
        s2 = (s2 + src[p + 2] * kv) | 0;
      }
      out[o++] = clip8(s0);
      out[o++] = clip8(s1);
      out[o++] = clip8(s2);
    }
  }
  return out;
}

function resampleVertical(
  src: Uint8Array,
  width: number,
  outH: number,
  c: Coeffs,
  rowShift: number,
): Uint8Array {
  const stride = width * 3;
  const out = new Uint8Array(stride * outH);
  const half = 1 << (PRECISION_BITS - 1);
  const { bounds, k, ksize } = c;
  // Row accumulator: taps outer, pixels inner, so both buffers are read sequentially. Same sums as Pillow's.
  const acc = new Int32Array(stride);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2] - rowShift;
    const ymax = bounds[yy * 2 + 1];
    const kb = yy * ksize;
    acc.fill(half);
    for (let y = 0; y < ymax; y++) {
      const kv = k[kb + y];
      const r = (y + ymin) * stride;
      for (let xx = 0; xx < stride; xx++) acc[xx] += src[r + xx] * kv;
    }
    const o = yy * stride;
    for (let xx = 0; xx < stride; xx++) out[o + xx] = clip8(acc[xx]);
  }
  return out;
}

/**
 * PIL Image.resize with NEAREST (Pillow's ImagingScaleAffine): source coordinates are accumulated
 * in doubles from scale/2 by repeated addition, so the port accumulates the same way.
 */
function resizeNearest(image: RgbImage, outW: number, outH: number): Uint8Array {
  const out = new Uint8Array(outW * outH * 3);
  const ax = image.width / outW;
  const ay = image.height / outH;
  const xin = new Int32Array(outW);
  let xo = ax * 0.5;
  for (let x = 0; x < outW; x++) {
    xin[x] = Math.min(image.width - 1, Math.trunc(xo));
    xo += ax;
  }
  let yo = ay * 0.5;
  for (let y = 0; y < outH; y++) {
    const yi = Math.min(image.height - 1, Math.trunc(yo));
    yo += ay;
    for (let x = 0; x < outW; x++) {
      const s = (yi * image.width + xin[x]) * 3;
      const o = (y * outW + x) * 3;
      out[o] = image.data[s];
      out[o + 1] = image.data[s + 1];
      out[o + 2] = image.data[s + 2];
    }
  }
  return out;
}

/**
 * PIL `Image.resize((outW, outH), resample)` on an RGB image: horizontal pass first (only over the rows
 * the vertical pass reads), then vertical; a pass whose size does not change is skipped, as Pillow does.
 */
export function resizeRgb(
  image: RgbImage,
  outW: number,
  outH: number,
  resample: ImageSpec['resample'],
): RgbImage {
  if (image.data.length !== image.width * image.height * 3) {
    throw new RangeError(
      `RGB buffer of ${image.data.length} bytes does not match ${image.width}x${image.height}x3`,
    );
  }
  if (resample === 'nearest') return { width: outW, height: outH, data: resizeNearest(image, outW, outH) };
  const filter = resample === 'bicubic' ? BICUBIC : BILINEAR;
  const needH = outW !== image.width;
  const needV = outH !== image.height;
  const vert = precomputeCoeffs(image.height, outH, filter);
  let data = image.data;
  let width = image.width;
  let rowShift = 0;
  if (needH) {
    const first = vert.bounds[0];
    const last = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
    const horiz = precomputeCoeffs(image.width, outW, filter);
    data = resampleHorizontal(data, width, first, outW, last - first, horiz);
    width = outW;
    rowShift = first;
  }
  if (needV) {
    data = resampleVertical(data, width, outH, vert, rowShift);
  } else if (!needH) {
    data = data.slice();
  }
  return { width: outW, height: outH, data };
}

/** RGB bytes to the model's pixel tensor: float32 CHW [3, spec.height, spec.width]. */
export function preprocessImage(image: RgbImage, spec: ImageSpec): Float32Array {
  const resized = resizeRgb(image, spec.width, spec.height, spec.resample);
  const plane = spec.width * spec.height;
  const out = new Float32Array(3 * plane);
  const mean = spec.mean.map(Math.fround);
  const std = spec.std.map(Math.fround);
  // Each byte value maps to one float; a table avoids redoing the float64→float32 steps per pixel.
  const lut = new Float32Array(256 * 3);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) {
      const rescaled = Math.fround(v * spec.rescaleFactor);
      lut[c * 256 + v] = Math.fround(Math.fround(rescaled - mean[c]) / std[c]);
    }
  }
  const d = resized.data;
  for (let i = 0; i < plane; i++) {
    out[i] = lut[d[i * 3]];
    out[plane + i] = lut[256 + d[i * 3 + 1]];
    out[2 * plane + i] = lut[512 + d[i * 3 + 2]];
  }
  return out;
}
