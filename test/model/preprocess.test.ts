import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/io/image.js';
import type { ImageSpec } from '../../src/model/manifest.js';
import { imageSpecFromPreprocessorConfig, preprocessImage, resizeRgb } from '../../src/model/preprocess.js';

const FIXTURE = join(import.meta.dirname, '../fixtures/blip-tiny');

interface PixelRef {
  shape: number[];
  bin: string;
}
interface Reference {
  images: { name: string; png_mode: string }[];
  pixel_values: { images: Record<string, { png: PixelRef; jpg: PixelRef }> };
}

let ref: Reference;
let spec: ImageSpec;

beforeAll(async () => {
  ref = JSON.parse(await readFile(join(FIXTURE, 'reference.json'), 'utf8')) as Reference;
  spec = imageSpecFromPreprocessorConfig(
    JSON.parse(await readFile(join(FIXTURE, 'captioner/preprocessor_config.json'), 'utf8')),
  );
});

async function readBin(rel: string): Promise<Float32Array> {
  const b = await readFile(join(FIXTURE, rel));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

function diff(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / a.length };
}

describe('imageSpecFromPreprocessorConfig', () => {
  it('reads the fixture config', () => {
    expect(spec).toEqual({
      height: 64,
      width: 64,
      mean: [0.48145466, 0.4578275, 0.40821073],
      std: [0.26862954, 0.26130258, 0.27577711],
      rescaleFactor: 0.00392156862745098,
      resample: 'bicubic',
    });
  });

  it('applies BlipImageProcessor defaults and the hub integer size', () => {
    const s = imageSpecFromPreprocessorConfig({ size: 384, do_normalize: true, do_resize: true });
    expect(s.height).toBe(384);
    expect(s.width).toBe(384);
    expect(s.resample).toBe('bicubic');
    expect(s.rescaleFactor).toBeCloseTo(1 / 255, 15);
    expect(imageSpecFromPreprocessorConfig({}, 224).width).toBe(224);
    expect(imageSpecFromPreprocessorConfig({ resample: 2 }).resample).toBe('bilinear');
  });

  it('rejects what it cannot reproduce', () => {
    expect(() => imageSpecFromPreprocessorConfig({ resample: 1 })).toThrow(/resample/);
    expect(() => imageSpecFromPreprocessorConfig({ do_resize: false })).toThrow(/do_resize/);
    expect(() => imageSpecFromPreprocessorConfig({ size: { shortest_edge: 384 } })).toThrow(/size/);
  });
});

describe('preprocessImage against HF BlipImageProcessor (PIL 9.4) pixel values', () => {
  it('matches every PNG exactly and every JPEG within the measured bound', async () => {
    const names = ref.images.map((i) => i.name);
    expect(names).toHaveLength(6);
    for (const name of names) {
      for (const ext of ['png', 'jpg'] as const) {
        const r = ref.pixel_values.images[name][ext];
        expect(r.shape).toEqual([1, 3, spec.height, spec.width]);
        const img = await decodeImage(await readFile(join(FIXTURE, 'images', `${name}.${ext}`)), name);
        const got = preprocessImage(img, spec);
        const want = await readBin(r.bin);
        expect(got.length).toBe(want.length);
        const d = diff(got, want);
        // PNG: an exact port. JPEG: sharp's mozjpeg and PIL 9.4's libjpeg agree bit for bit on these
        // fixtures (measured max abs 0, mean abs 0), so JPEGs are held to the same bound.
        const bound = 1e-6;
        expect(d.max, `${name}.${ext} max abs diff`).toBeLessThanOrEqual(bound);
        if (ext === 'jpg') expect(d.mean, `${name}.${ext} mean abs diff`).toBeLessThanOrEqual(1e-3);
      }
    }
  });
});

describe('resizeRgb (PIL resize)', () => {
  const ramp = (w: number, h: number) => {
    const data = new Uint8Array(w * h * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 256;
    return { width: w, height: h, data };
  };

  it('copies when the size is unchanged and keeps a flat image flat', () => {
    const img = ramp(5, 4);
    const same = resizeRgb(img, 5, 4, 'bicubic');
    expect(Array.from(same.data)).toEqual(Array.from(img.data));
    expect(same.data).not.toBe(img.data);
    const flat = { width: 7, height: 3, data: new Uint8Array(7 * 3 * 3).fill(200) };
    for (const [w, h] of [
      [3, 2],
      [20, 9],
      [7, 11],
    ]) {
      const out = resizeRgb(flat, w, h, 'bicubic');
      expect(out.data.every((v) => v === 200)).toBe(true);
    }
  });

  it('clamps bicubic overshoot at hard edges to 0..255', () => {
    const w = 8;
    const data = new Uint8Array(w * 3);
    for (let x = 4; x < w; x++) data.fill(255, x * 3, x * 3 + 3);
    const out = resizeRgb({ width: w, height: 1, data }, 32, 1, 'bicubic');
    // Upscaling a step with a = -0.5 rings; the ringing must saturate, not wrap around.
    expect(out.data[0]).toBe(0);
    expect(out.data[out.data.length - 1]).toBe(255);
    const row = Array.from(out.data.filter((_, i) => i % 3 === 0));
    for (let i = 1; i < row.length; i++) expect(row[i]).toBeGreaterThanOrEqual(row[i - 1]);
  });

  it('rejects a buffer whose size does not match', () => {
    expect(() => resizeRgb({ width: 2, height: 2, data: new Uint8Array(11) }, 4, 4, 'bicubic')).toThrow(
      RangeError,
    );
  });

  it('produces CHW float32 planes normalised per channel', () => {
    const img = {
      width: 2,
      height: 2,
      data: new Uint8Array([255, 0, 128, 255, 0, 128, 255, 0, 128, 255, 0, 128]),
    };
    const s: ImageSpec = { ...spec, width: 2, height: 2 };
    const px = preprocessImage(img, s);
    expect(px).toHaveLength(12);
    const expectR = Math.fround(
      Math.fround(Math.fround(255 * s.rescaleFactor) - Math.fround(s.mean[0])) / Math.fround(s.std[0]),
    );
    expect(Array.from(px.subarray(0, 4))).toEqual([expectR, expectR, expectR, expectR]);
    expect(px[4]).toBeLessThan(0);
    expect(px[8]).toBeCloseTo((128 / 255 - s.mean[2]) / s.std[2], 5);
  });
});
