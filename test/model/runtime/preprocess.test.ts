import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../../src/io/image.js';
import { imageSpecFromPreprocessorConfig } from '../../../src/model/image-spec.js';
import type { ImageSpec } from '../../../src/model/manifest.js';
import { preprocessImage, resizeRgb } from '../../../src/model/runtime/preprocess.js';

const FIXTURE = join(import.meta.dirname, '../../fixtures/blip-tiny');

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

  // Expected bytes from Pillow 9.4.0 (Debian bookworm python3-pil), Image.frombytes('RGB', ...).resize(...),
  // on the pattern below: odd sizes, up- and downscaling, each filter.
  it('matches Pillow 9.4 byte for byte on small odd-sized resizes', () => {
    const pattern = (w: number, h: number) => {
      const data = new Uint8Array(w * h * 3);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          for (let c = 0; c < 3; c++)
            data[(y * w + x) * 3 + c] = ((x * 53 + y * 97 + c * 71) ^ (x * y)) % 256;
        }
      }
      return { width: w, height: h, data };
    };
    const cases: [number, number, number, number, ImageSpec['resample'], number[]][] = [
      [
        7,
        5,
        3,
        4,
        'bicubic',
        [
          57, 132, 176, 138, 135, 123, 76, 111, 163, 170, 112, 119, 81, 111, 158, 117, 148, 130, 117, 107,
          158, 167, 115, 117, 112, 104, 159, 154, 105, 77, 129, 91, 159, 148, 123, 112,
        ],
      ],
      [
        4,
        3,
        9,
        5,
        'bicubic',
        [
          0, 59, 128, 0, 68, 142, 22, 91, 175, 49, 120, 210, 72, 153, 252, 95, 186, 255, 130, 215, 176, 164,
          237, 64, 176, 247, 17, 28, 107, 186, 35, 118, 177, 58, 148, 150, 87, 165, 136, 122, 141, 166, 146,
          116, 189, 132, 133, 147, 106, 162, 88, 102, 173, 64, 92, 163, 255, 103, 176, 215, 126, 214, 112,
          154, 215, 34, 192, 118, 48, 204, 21, 88, 127, 22, 114, 26, 60, 136, 0, 73, 146, 159, 64, 143, 172,
          75, 134, 204, 104, 108, 214, 120, 94, 165, 98, 114, 105, 76, 145, 77, 94, 174, 64, 123, 199, 63,
          135, 210, 196, 0, 61, 209, 2, 76, 248, 23, 110, 246, 52, 146, 138, 87, 172, 33, 123, 194, 44, 154,
          218, 99, 176, 236, 117, 187, 244,
        ],
      ],
      [
        6,
        4,
        11,
        3,
        'bilinear',
        [
          29, 100, 171, 46, 117, 164, 75, 146, 151, 104, 143, 170, 132, 130, 199, 124, 155, 138, 114, 176, 76,
          142, 107, 106, 146, 62, 135, 79, 92, 165, 40, 110, 182, 146, 89, 160, 162, 105, 136, 191, 133, 96,
          166, 111, 109, 124, 71, 139, 87, 95, 164, 55, 123, 184, 83, 148, 148, 110, 158, 128, 137, 123, 154,
          152, 102, 168, 83, 77, 148, 100, 93, 165, 129, 120, 194, 126, 150, 150, 111, 180, 83, 141, 118, 105,
          175, 54, 131, 202, 80, 118, 204, 98, 115, 127, 95, 138, 82, 94, 152,
        ],
      ],
      [
        5,
        3,
        7,
        7,
        'nearest',
        [
          0, 71, 142, 53, 124, 195, 53, 124, 195, 106, 177, 248, 159, 230, 45, 159, 230, 45, 212, 27, 98, 0,
          71, 142, 53, 124, 195, 53, 124, 195, 106, 177, 248, 159, 230, 45, 159, 230, 45, 212, 27, 98, 97,
          168, 239, 151, 220, 37, 151, 220, 37, 201, 16, 91, 3, 68, 141, 3, 68, 141, 49, 120, 199, 97, 168,
          239, 151, 220, 37, 151, 220, 37, 201, 16, 91, 3, 68, 141, 3, 68, 141, 49, 120, 199, 97, 168, 239,
          151, 220, 37, 151, 220, 37, 201, 16, 91, 3, 68, 141, 3, 68, 141, 49, 120, 199, 194, 9, 80, 245, 60,
          135, 245, 60, 135, 40, 119, 190, 103, 174, 233, 103, 174, 233, 158, 213, 44, 194, 9, 80, 245, 60,
          135, 245, 60, 135, 40, 119, 190, 103, 174, 233, 103, 174, 233, 158, 213, 44,
        ],
      ],
      [
        9,
        2,
        4,
        2,
        'bicubic',
        [
          36, 115, 189, 156, 163, 124, 76, 83, 144, 124, 203, 57, 144, 164, 122, 78, 67, 136, 113, 176, 173,
          122, 86, 108,
        ],
      ],
    ];
    for (const [w, h, ow, oh, resample, want] of cases) {
      const got = resizeRgb(pattern(w, h), ow, oh, resample);
      expect([got.width, got.height]).toEqual([ow, oh]);
      expect(Array.from(got.data), `${w}x${h} -> ${ow}x${oh} ${resample}`).toEqual(want);
    }
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
