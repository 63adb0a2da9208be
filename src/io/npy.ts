import { UsageError } from '../core/errors.js';

export interface NpyArray {
  shape: number[];
  data: Float32Array;
}

/**
 * Read a NumPy .npy file of little-endian float32 in C order (what `np.save` writes for a
 * preprocessed pixel tensor). Anything else is refused with a clear message.
 */
export function parseNpy(buf: Buffer, name = 'array.npy'): NpyArray {
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw new UsageError(`${name} is not a .npy file`);
  const major = buf[6];
  const headerLength = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', headerStart, headerStart + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr !== '<f4') throw new UsageError(`${name}: dtype ${descr} is not little-endian float32 ('<f4')`);
  if (fortran !== 'False') throw new UsageError(`${name}: Fortran-ordered arrays are not supported`);
  if (shapeText === undefined) throw new UsageError(`${name}: no shape in the .npy header`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  const offset = headerStart + headerLength;
  const count = shape.reduce((a, b) => a * b, 1);
  if (buf.length - offset < count * 4) throw new UsageError(`${name}: truncated (${count} floats expected)`);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = buf.readFloatLE(offset + 4 * i);
  return { shape, data };
}

/** Encode float32 data as .npy (tests and tools that hand pixels to other programs). */
export function encodeNpy(data: Float32Array, shape: number[]): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64);
  header += '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.alloc(data.length * 4);
  data.forEach((v, i) => {
    body.writeFloatLE(v, 4 * i);
  });
  return Buffer.concat([head, Buffer.from(header, 'latin1'), body]);
}
