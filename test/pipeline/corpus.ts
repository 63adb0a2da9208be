import sharp from 'sharp';
import { pngDeclaring } from '../io/fixtures.js';

sharp.cache(false);

/** 64x48, left half red, right half blue: orientation is visible in the decoded size. */
function halves(): Buffer {
  const w = 64;
  const h = 48;
  const buf = Buffer.alloc(w * h * 3);
  for (let i = 0; i < w * h; i++) buf.set(i % w < w / 2 ? [220, 20, 40] : [10, 40, 230], i * 3);
  return buf;
}

const raw = (data: Buffer, width: number, height: number, channels: 1 | 2 | 3 | 4) =>
  sharp(data, { raw: { width, height, channels } });

export interface CorpusFile {
  name: string;
  bytes: Buffer;
  /** The reason the pipeline must give, or 'ok'. */
  expect: string;
  /** Decoded size when expect is 'ok'. */
  size?: [number, number];
}

/** Images a scraped dataset really contains, broken and merely unusual ones. */
export async function badImageCorpus(): Promise<CorpusFile[]> {
  const rgb = halves();
  const noise = Buffer.alloc(200 * 150 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
  const noisyJpeg = await raw(noise, 200, 150, 3).jpeg().toBuffer();
  const png = await raw(rgb, 64, 48, 3).png().toBuffer();
  const bomb = pngDeclaring(png, 30000, 30000);
  const frames = Buffer.alloc(10 * 20 * 3);
  for (let i = 0; i < 200; i++) frames.set(i < 100 ? [255, 0, 0] : [0, 0, 255], i * 3);
  const grey = Buffer.alloc(20 * 10);
  for (let i = 0; i < grey.length; i++) grey[i] = i % 256;
  const rgba = Buffer.alloc(16 * 16 * 4);
  for (let i = 0; i < 256; i++) rgba.set([i, 255 - i, 128, i % 3 === 0 ? 0 : 255], i * 4);
  return [
    {
      name: 'truncated.jpg',
      bytes: noisyJpeg.subarray(0, Math.floor(noisyJpeg.length / 2)),
      expect: 'undecodable',
    },
    { name: 'zero.jpg', bytes: Buffer.alloc(0), expect: 'undecodable' },
    {
      name: 'text.jpg',
      bytes: Buffer.from('<html><body>404 not found</body></html>\n'),
      expect: 'undecodable',
    },
    { name: 'bomb.png', bytes: bomb, expect: 'too_large' },
    {
      name: 'cmyk.jpg',
      bytes: await raw(rgb, 64, 48, 3).toColourspace('cmyk').jpeg().toBuffer(),
      expect: 'ok',
      size: [64, 48],
    },
    {
      name: 'deep.png',
      bytes: await raw(rgb, 64, 48, 3).toColourspace('rgb16').png().toBuffer(),
      expect: 'ok',
      size: [64, 48],
    },
    {
      name: 'anim.gif',
      bytes: await sharp(frames, { raw: { width: 10, height: 20, channels: 3, pageHeight: 10 } })
        .gif({ loop: 0 })
        .toBuffer(),
      expect: 'ok',
      size: [10, 10],
    },
    {
      name: 'exif6.jpg',
      bytes: await raw(rgb, 64, 48, 3).jpeg().withMetadata({ orientation: 6 }).toBuffer(),
      expect: 'ok',
      size: [48, 64],
    },
    {
      name: 'grey.png',
      bytes: await raw(grey, 20, 10, 1).toColourspace('b-w').png().toBuffer(),
      expect: 'ok',
      size: [20, 10],
    },
    { name: 'alpha.png', bytes: await raw(rgba, 16, 16, 4).png().toBuffer(), expect: 'ok', size: [16, 16] },
    { name: 'plain.webp', bytes: await raw(rgb, 64, 48, 3).webp().toBuffer(), expect: 'ok', size: [64, 48] },
  ];
}
