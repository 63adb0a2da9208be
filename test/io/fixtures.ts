import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import sharp from 'sharp';

sharp.cache(false);

/** A small solid-colour image with a contrasting square, encoded as asked. */
export async function makeImage(
  format: 'png' | 'jpeg' | 'webp' = 'png',
  colour: [number, number, number] = [200, 40, 40],
  size = 24,
): Promise<Buffer> {
  const square = await sharp({
    create: {
      width: size / 2,
      height: size / 2,
      channels: 3,
      background: { r: 255 - colour[0], g: 255 - colour[1], b: 255 - colour[2] },
    },
  })
    .png()
    .toBuffer();
  const base = sharp({
    create: {
      width: size,
      height: size,
      channels: 3,
      background: { r: colour[0], g: colour[1], b: colour[2] },
    },
  }).composite([{ input: square, left: size / 4, top: size / 4 }]);
  return format === 'png'
    ? base.png().toBuffer()
    : format === 'jpeg'
      ? base.jpeg().toBuffer()
      : base.webp().toBuffer();
}

/**
 * A valid zstd frame made of raw (stored) blocks. Node 20 has no zstd encoder; this exercises the
 * reader's zstd decoder on a real frame without one.
 */
export function rawZstd(input: Uint8Array): Uint8Array {
  const header = Buffer.alloc(9);
  header.writeUInt32LE(0xfd2fb528, 0);
  header[4] = 0xa0; // single segment, 4-byte frame content size, no checksum, no dictionary
  header.writeUInt32LE(input.length, 5);
  const parts: Buffer[] = [header];
  const max = 128 * 1024;
  for (let off = 0; off < input.length || off === 0; off += max) {
    const chunk = input.subarray(off, Math.min(input.length, off + max));
    const last = off + max >= input.length ? 1 : 0;
    const h = (chunk.length << 3) | last; // block type 0: raw
    parts.push(Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff]), Buffer.from(chunk));
    if (input.length === 0) break;
  }
  return new Uint8Array(Buffer.concat(parts));
}

export function makeParquet(
  columns: Record<string, (string | null)[]>,
  codec: 'UNCOMPRESSED' | 'SNAPPY' | 'GZIP' | 'ZSTD' = 'SNAPPY',
  rowGroupSize?: number,
): Buffer {
  const buf = parquetWriteBuffer({
    columnData: Object.entries(columns).map(([name, data]) => ({
      name,
      data,
      type: 'STRING' as const,
      nullable: true,
    })),
    codec,
    compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gzipSync(input)), ZSTD: rawZstd },
    ...(rowGroupSize ? { rowGroupSize } : {}),
  });
  return Buffer.from(buf);
}

export function jsonl(rows: unknown[]): string {
  return `${rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n')}\n`;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A valid PNG whose IHDR is rewritten to declare width x height (CRC fixed), data left tiny. */
export function pngDeclaring(png: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(png);
  // Signature (8) + IHDR length (4) + "IHDR" (4): width and height follow, CRC covers type + 13 data bytes.
  if (out.toString('latin1', 12, 16) !== 'IHDR') throw new Error('not a PNG with IHDR first');
  out.writeUInt32BE(width, 16);
  out.writeUInt32BE(height, 20);
  out.writeUInt32BE(crc32(out.subarray(12, 29)), 29);
  return out;
}
