import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { ModelError } from '../../core/errors.js';

/** fs.readFile refuses files over 2 GiB; reading in slices into one buffer has no such cap. */
const READ_SLICE = 64 * 1024 * 1024;

/**
 * Read a whole file into a single freshly allocated buffer whose byteOffset is 0, so that
 * tensors can be viewed in place when their file offset is 4-aligned.
 */
export async function readWholeFile(path: string): Promise<Buffer> {
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw new ModelError(`cannot open ${path}`, { cause: err });
  });
  try {
    const { size } = await fh.stat();
    // allocUnsafe would hand small files a slice of the shared pool (non-zero byteOffset).
    const buf = Buffer.from(new ArrayBuffer(size));
    let pos = 0;
    while (pos < size) {
      const { bytesRead } = await fh.read(buf, pos, Math.min(READ_SLICE, size - pos), pos);
      if (bytesRead === 0)
        throw new ModelError(`${path}: file shrank while reading (${pos} of ${size} bytes)`);
      pos += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

export const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** Element types capfilt accepts in checkpoints; all are widened to float32. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';

export const DTYPE_BYTES: Record<FloatDtype, number> = { F32: 4, F16: 2, BF16: 2 };

const F16_TABLE = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return t;
})();

/**
 * Decode `count` little-endian elements of `dtype` starting at byte `offset` of `buf` into
 * float32. F32 at a 4-aligned offset on a little-endian host is a view (no copy).
 */
export function decodeFloats(
  buf: Uint8Array,
  offset: number,
  count: number,
  dtype: FloatDtype,
): Float32Array {
  const abs = buf.byteOffset + offset;
  if (dtype === 'F32') {
    if (abs % 4 === 0 && LITTLE_ENDIAN_HOST) return new Float32Array(buf.buffer, abs, count);
    const out = new Float32Array(count);
    const dv = new DataView(buf.buffer, abs, count * 4);
    for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, true);
    return out;
  }
  const out = new Float32Array(count);
  if (abs % 2 === 0 && LITTLE_ENDIAN_HOST) {
    const u16 = new Uint16Array(buf.buffer, abs, count);
    if (dtype === 'F16') {
      for (let i = 0; i < count; i++) out[i] = F16_TABLE[u16[i]];
    } else {
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u32[i] = u16[i] << 16;
    }
    return out;
  }
  const dv = new DataView(buf.buffer, abs, count * 2);
  if (dtype === 'F16') {
    for (let i = 0; i < count; i++) out[i] = F16_TABLE[dv.getUint16(i * 2, true)];
  } else {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) u32[i] = dv.getUint16(i * 2, true) << 16;
  }
  return out;
}
