import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { SampleError } from '../../src/core/errors.js';
import { type DecodedImage, decodeImage, gifTransparentColour } from '../../src/io/image.js';
import { pngDeclaring } from './fixtures.js';

const FIXTURE = join(import.meta.dirname, '../fixtures/blip-tiny');

const RED = { r: 220, g: 20, b: 40 };
const BLUE = { r: 10, g: 40, b: 230 };

/** 64x48, left half RED, right half BLUE: orientation and channel order are visible. */
function halves(): Buffer {
  const w = 64;
  const h = 48;
  const buf = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const c = x < w / 2 ? RED : BLUE;
      buf.set([c.r, c.g, c.b], (y * w + x) * 3);
    }
  }
  return buf;
}

function rawInput(data: Buffer, width: number, height: number, channels: 1 | 2 | 3 | 4) {
  return sharp(data, { raw: { width, height, channels } });
}

function pixel(img: DecodedImage, x: number, y: number): number[] {
  const o = (y * img.width + x) * 3;
  return Array.from(img.data.subarray(o, o + 3));
}

function near(got: number[], want: { r: number; g: number; b: number }, tol: number): void {
  expect(Math.abs(got[0] - want.r), `R ${got}`).toBeLessThanOrEqual(tol);
  expect(Math.abs(got[1] - want.g), `G ${got}`).toBeLessThanOrEqual(tol);
  expect(Math.abs(got[2] - want.b), `B ${got}`).toBeLessThanOrEqual(tol);
}

async function rejection(
  bytes: Buffer,
  key: string,
  limits?: Parameters<typeof decodeImage>[2],
): Promise<SampleError> {
  try {
    await decodeImage(bytes, key, limits);
  } catch (err) {
    expect(err).toBeInstanceOf(SampleError);
    const e = err as SampleError;
    expect(e.key).toBe(key);
    expect(e.message.startsWith(`${key}: `)).toBe(true);
    return e;
  }
  throw new Error(`${key} decoded but should have been rejected`);
}

let rgb: Buffer;
let jpeg: Buffer;
let png: Buffer;
let noisyJpeg: Buffer;
let noisyPng: Buffer;

beforeAll(async () => {
  rgb = halves();
  jpeg = await rawInput(rgb, 64, 48, 3).jpeg({ quality: 95 }).toBuffer();
  png = await rawInput(rgb, 64, 48, 3).png().toBuffer();
  const noise = Buffer.alloc(300 * 200 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
  noisyJpeg = await rawInput(noise, 300, 200, 3).jpeg().toBuffer();
  noisyPng = await rawInput(noise, 300, 200, 3).png().toBuffer();
});

describe('decodeImage: formats that must decode', () => {
  it('decodes PNG losslessly to HWC RGB', async () => {
    const img = await decodeImage(png, 'png');
    expect(img).toMatchObject({
      format: 'png',
      width: 64,
      height: 48,
      originalWidth: 64,
      originalHeight: 48,
    });
    expect(img.data).toHaveLength(64 * 48 * 3);
    expect(Buffer.from(img.data).equals(rgb)).toBe(true);
  });

  it('decodes JPEG, WebP and TIFF', async () => {
    for (const [fmt, bytes] of [
      ['jpeg', jpeg],
      ['webp', await rawInput(rgb, 64, 48, 3).webp({ quality: 95 }).toBuffer()],
      ['tiff', await rawInput(rgb, 64, 48, 3).tiff().toBuffer()],
    ] as const) {
      const img = await decodeImage(bytes, fmt);
      expect(img.format).toBe(fmt);
      expect([img.width, img.height]).toEqual([64, 48]);
      near(pixel(img, 5, 5), RED, 12);
      near(pixel(img, 60, 40), BLUE, 12);
    }
  });

  it('applies EXIF orientation 6 (90° clockwise): dimensions swap, left edge becomes the top', async () => {
    const rotated = await rawInput(rgb, 64, 48, 3)
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    expect((await sharp(rotated).metadata()).orientation).toBe(6);
    const img = await decodeImage(rotated, 'exif6');
    expect([img.width, img.height]).toEqual([48, 64]);
    expect([img.originalWidth, img.originalHeight]).toEqual([64, 48]);
    near(pixel(img, 24, 2), RED, 12);
    near(pixel(img, 24, 61), BLUE, 12);
  });

  it('replicates grayscale into three equal channels (8-bit and 16-bit)', async () => {
    const grey = Buffer.alloc(20 * 10);
    for (let i = 0; i < grey.length; i++) grey[i] = i % 256;
    const greyPng = await rawInput(grey, 20, 10, 1).toColourspace('b-w').png().toBuffer();
    expect((await sharp(greyPng).metadata()).channels).toBe(1);
    const img = await decodeImage(greyPng, 'grey');
    for (let i = 0; i < grey.length; i++) {
      expect(pixel(img, i % 20, Math.floor(i / 20))).toEqual([grey[i], grey[i], grey[i]]);
    }
    const grey16 = await rawInput(grey, 20, 10, 1).toColourspace('grey16').png().toBuffer();
    expect((await sharp(grey16).metadata()).depth).toBe('ushort');
    const img16 = await decodeImage(grey16, 'grey16');
    expect(Buffer.from(img16.data).equals(Buffer.from(img.data))).toBe(true);
  });

  it('reduces 16-bit RGB PNG to 8 bits', async () => {
    const png16 = await rawInput(rgb, 64, 48, 3).toColourspace('rgb16').png().toBuffer();
    expect((await sharp(png16).metadata()).depth).toBe('ushort');
    const img = await decodeImage(png16, 'png16');
    expect(Buffer.from(img.data).equals(rgb)).toBe(true);
  });

  it('converts CMYK JPEG to RGB the way PIL does (no colour management)', async () => {
    const cmyk = await rawInput(rgb, 64, 48, 3).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const img = await decodeImage(cmyk, 'cmyk');
    expect(img.data).toHaveLength(64 * 48 * 3);
    // Pillow 9.4 `Image.open(f).convert('RGB')` on this file gives (241, 7, 5) and (16, 63, 255);
    // an ICC transform (sharp's default) would give about (216, 3, 123) for the first.
    near(pixel(img, 5, 5), { r: 241, g: 7, b: 5 }, 2);
    near(pixel(img, 60, 40), { r: 16, g: 63, b: 255 }, 2);
  });

  it('ignores embedded ICC profiles, as PIL does', async () => {
    const p3 = await rawInput(rgb, 64, 48, 3).withIccProfile('p3').png().toBuffer();
    expect((await sharp(p3).metadata()).icc).toBeDefined();
    const stored = await sharp(p3, { ignoreIcc: true }).removeAlpha().raw().toBuffer();
    const managed = await sharp(p3).removeAlpha().raw().toBuffer();
    expect(stored.equals(managed)).toBe(false);
    const img = await decodeImage(p3, 'p3');
    expect(Buffer.from(img.data).equals(stored)).toBe(true);
  });

  it('expands palette PNGs', async () => {
    const pal = await rawInput(rgb, 64, 48, 3).png({ palette: true }).toBuffer();
    expect((await sharp(pal).metadata()).isPalette).toBe(true);
    const img = await decodeImage(pal, 'palette');
    near(pixel(img, 5, 5), RED, 2);
    near(pixel(img, 60, 40), BLUE, 2);
  });

  it('takes the first frame of an animated GIF', async () => {
    const frames = Buffer.alloc(10 * 20 * 3);
    for (let i = 0; i < 100; i++) frames.set([255, 0, 0], i * 3);
    for (let i = 100; i < 200; i++) frames.set([0, 0, 255], i * 3);
    const gif = await sharp(frames, { raw: { width: 10, height: 20, channels: 3, pageHeight: 10 } })
      .gif({ loop: 0 })
      .toBuffer();
    expect((await sharp(gif, { pages: -1 }).metadata()).pages).toBe(2);
    const img = await decodeImage(gif, 'anim');
    expect(img).toMatchObject({
      format: 'gif',
      width: 10,
      height: 10,
      originalWidth: 10,
      originalHeight: 10,
    });
    for (let y = 0; y < 10; y++) expect(pixel(img, 3, y)).toEqual([255, 0, 0]);
  });

  it('gives transparent GIF pixels the transparent palette colour, as PIL does', async () => {
    const w = 16;
    const h = 8;
    const frame = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) frame.set(i % w < 8 ? [200, 100, 50, 0] : [10, 40, 230, 255], i * 4);
    const red = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) red.set([255, 0, 0, 255], i * 4);
    const still = await sharp(frame, { raw: { width: w, height: h, channels: 4 } })
      .gif()
      .toBuffer();
    const anim = await sharp(Buffer.concat([frame, red]), {
      raw: { width: w, height: h * 2, channels: 4, pageHeight: h },
    })
      .gif({ loop: 0 })
      .toBuffer();
    for (const [name, gif] of [
      ['still', still],
      ['anim', anim],
    ] as const) {
      const key = gifTransparentColour(gif);
      // Pillow 9.4 convert('RGB') gives (76, 105, 113) on the transparent half of these files.
      expect(key).toEqual([76, 105, 113]);
      const img = await decodeImage(gif, name);
      expect([img.width, img.height]).toEqual([w, h]);
      expect(pixel(img, 2, 2)).toEqual(key);
      expect(pixel(img, 12, 5)).toEqual([10, 40, 230]);
    }
    expect(gifTransparentColour(png)).toBe(null);
  });

  it('drops alpha without compositing, like PIL convert("RGB") (fixture 5_alpha)', async () => {
    const bytes = await readFile(join(FIXTURE, 'images/5_alpha.png'));
    const rgba = await sharp(bytes).ensureAlpha().raw().toBuffer();
    let transparent = 0;
    for (let i = 3; i < rgba.length; i += 4) if (rgba[i] < 255) transparent++;
    expect(transparent).toBeGreaterThan(1000);
    const img = await decodeImage(bytes, '5_alpha');
    const want = Buffer.alloc(img.width * img.height * 3);
    for (let p = 0; p < img.width * img.height; p++) want.set(rgba.subarray(p * 4, p * 4 + 3), p * 3);
    expect(Buffer.from(img.data).equals(want)).toBe(true);
  });

  it('drops alpha from grey+alpha images too', async () => {
    const la = Buffer.alloc(8 * 8 * 2);
    for (let i = 0; i < 64; i++) la.set([i * 3, i % 2 ? 0 : 255], i * 2);
    const img = await decodeImage(await rawInput(la, 8, 8, 2).png().toBuffer(), 'la');
    for (let i = 0; i < 64; i++) expect(pixel(img, i % 8, Math.floor(i / 8))).toEqual([i * 3, i * 3, i * 3]);
  });
});

describe('decodeImage: inputs that must be rejected, never hang', () => {
  it('rejects zero-byte, text named .jpg and random bytes as undecodable', async () => {
    expect((await rejection(Buffer.alloc(0), 'empty.jpg')).reason).toBe('undecodable');
    const text = await rejection(Buffer.from('<html><body>404 not found</body></html>\n'), 'page.jpg');
    expect(text.reason).toBe('undecodable');
    expect(text.message).toMatch(/unsupported image format/);
    const junk = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(500, 0x5a)]);
    expect((await rejection(junk, 'junk.jpg')).reason).toBe('undecodable');
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    );
    expect((await rejection(svg, 'vector.jpg')).reason).toBe('undecodable');
  });

  it('rejects truncated JPEG and PNG files as undecodable', async () => {
    for (const frac of [0.1, 0.5, 0.9]) {
      const j = await rejection(
        noisyJpeg.subarray(0, Math.floor(noisyJpeg.length * frac)),
        `trunc-${frac}.jpg`,
      );
      expect(j.reason).toBe('undecodable');
      const p = await rejection(
        noisyPng.subarray(0, Math.floor(noisyPng.length * frac)),
        `trunc-${frac}.png`,
      );
      expect(p.reason).toBe('undecodable');
    }
  });

  it('rejects a pixel bomb from its header as too_large', async () => {
    const bomb = pngDeclaring(png, 30000, 30000);
    expect(bomb.length).toBeLessThan(2000);
    const t0 = Date.now();
    const e = await rejection(bomb, 'bomb.png');
    expect(e.reason).toBe('too_large');
    expect(Date.now() - t0).toBeLessThan(5000);
    // The same image under a smaller custom limit.
    expect((await rejection(png, 'small-limit.png', { maxPixels: 1000 })).reason).toBe('too_large');
  });

  it('rejects files over maxBytes without decoding them', async () => {
    const e = await rejection(noisyPng, 'huge.png', { maxBytes: 1024 });
    expect(e.reason).toBe('too_large');
    expect(e.message).toMatch(/1024-byte limit/);
  });

  it('gives up on a slow decode with reason timeout', async () => {
    const w = 1200;
    const big = await sharp({
      create: {
        width: w,
        height: w,
        channels: 3,
        background: '#000',
        noise: { type: 'gaussian', mean: 128, sigma: 40 },
      },
    })
      .png({ compressionLevel: 1 })
      .toBuffer();
    const e = await rejection(big, 'slow.png', { timeoutMs: 1 });
    expect(e.reason).toBe('timeout');
    // And it decodes when given time (the rejection was the deadline, not the file).
    const img = await decodeImage(big, 'slow.png', { timeoutMs: 60_000 });
    expect(img.width).toBe(w);
  });
});
