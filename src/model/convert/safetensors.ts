import { open } from 'node:fs/promises';
import { ModelError } from '../../core/errors.js';
import { type HostTensor, numel, type WeightMap } from '../tensor.js';
import { DTYPE_BYTES, decodeFloats, type FloatDtype, LITTLE_ENDIAN_HOST, readWholeFile } from './binary.js';

/** The reference implementation refuses larger headers; so do we (a corrupt length is the usual cause). */
const MAX_HEADER_BYTES = 100_000_000;
const ALL_DTYPES = new Set([
  'BOOL',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'F64',
  'I64',
  'U64',
]);

export interface ReadWeightsOptions {
  /** Keys to leave out before their dtype is even looked at (e.g. int64 `position_ids` buffers). */
  skip?: (key: string) => boolean;
}

interface Entry {
  key: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseHeader(buf: Uint8Array, source: string): { entries: Entry[]; dataStart: number } {
  if (buf.byteLength < 8)
    throw new ModelError(`${source}: too short for a safetensors file (${buf.byteLength} bytes)`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = dv.getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES) || headerLen > BigInt(buf.byteLength - 8)) {
    throw new ModelError(
      `${source}: safetensors header length ${headerLen} exceeds the file (${buf.byteLength} bytes)`,
    );
  }
  const n = Number(headerLen);
  const text = Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`${source}: safetensors header is not valid JSON`, { cause: err });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ModelError(`${source}: safetensors header is not a JSON object`);
  }
  const dataStart = 8 + n;
  const dataLen = buf.byteLength - dataStart;
  const entries: Entry[] = [];
  for (const [key, info] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') continue;
    if (typeof info !== 'object' || info === null)
      throw new ModelError(`${source}: ${key}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (typeof dtype !== 'string' || !ALL_DTYPES.has(dtype)) {
      throw new ModelError(`${source}: ${key}: unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new ModelError(`${source}: ${key}: shape ${JSON.stringify(shape)} is not a list of sizes`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new ModelError(`${source}: ${key}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLen) {
      throw new ModelError(
        `${source}: ${key}: data_offsets [${begin}, ${end}] outside the ${dataLen}-byte data section`,
      );
    }
    const width = dtype in DTYPE_BYTES ? DTYPE_BYTES[dtype as FloatDtype] : dtypeWidth(dtype);
    const bytes = numel(shape as number[]) * width;
    if (bytes !== end - begin) {
      throw new ModelError(
        `${source}: ${key}: ${dtype}${JSON.stringify(shape)} needs ${bytes} bytes, data_offsets span ${end - begin}`,
      );
    }
    entries.push({ key, dtype, shape: shape as number[], begin, end });
  }
  // Like the reference reader: tensors must tile the data section exactly (no overlap, no hole).
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin !== pos) {
      throw new ModelError(
        `${source}: ${e.key}: data_offsets start at ${e.begin}, expected ${pos} (overlap or gap)`,
      );
    }
    pos = e.end;
  }
  if (pos !== dataLen) throw new ModelError(`${source}: tensors cover ${pos} of ${dataLen} data bytes`);
  return { entries, dataStart };
}

function dtypeWidth(dtype: string): number {
  if (dtype === 'BOOL' || dtype === 'U8' || dtype === 'I8' || dtype.startsWith('F8')) return 1;
  if (dtype === 'I16' || dtype === 'U16') return 2;
  if (dtype === 'I32' || dtype === 'U32') return 4;
  return 8;
}

/**
 * Parse a safetensors image held in memory. F32 tensors at 4-aligned offsets are views into
 * `buf` (keep it alive, do not mutate); F16 and BF16 are widened to float32 copies.
 */
export function parseSafetensors(
  buf: Uint8Array,
  source = 'safetensors',
  options: ReadWeightsOptions = {},
): WeightMap {
  const { entries, dataStart } = parseHeader(buf, source);
  const weights: WeightMap = new Map();
  for (const e of entries) {
    if (options.skip?.(e.key)) continue;
    if (!(e.dtype in DTYPE_BYTES)) {
      throw new ModelError(`${source}: ${e.key}: dtype ${e.dtype} is not supported (F32, F16 and BF16 are)`);
    }
    const data = decodeFloats(buf, dataStart + e.begin, numel(e.shape), e.dtype as FloatDtype);
    weights.set(e.key, { shape: e.shape, data });
  }
  return weights;
}

/** Read every tensor of a `.safetensors` file as float32; `__metadata__` is ignored. */
export async function readSafetensors(path: string, options: ReadWeightsOptions = {}): Promise<WeightMap> {
  const buf = await readWholeFile(path);
  return parseSafetensors(buf, path, options);
}

/** Header of a safetensors file as the reference writer lays it out: JSON padded with spaces to 8 bytes. */
function safetensorsHeader(
  tensors: ReadonlyArray<{ key: string; shape: readonly number[] }>,
  metadata?: Record<string, string>,
): Buffer {
  const obj: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) obj.__metadata__ = metadata;
  let pos = 0;
  for (const t of tensors) {
    if (t.key === '__metadata__') throw new ModelError('a tensor cannot be named __metadata__');
    const bytes = numel(t.shape) * 4;
    obj[t.key] = { dtype: 'F32', shape: [...t.shape], data_offsets: [pos, pos + bytes] };
    pos += bytes;
  }
  const json = Buffer.from(JSON.stringify(obj), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return header;
}

/**
 * Write tensors produced one at a time, so a multi-gigabyte checkpoint never has to be held in
 * memory whole. `produce` is called once per spec, in order.
 */
export async function writeSafetensorsFrom(
  path: string,
  specs: ReadonlyArray<{ key: string; shape: readonly number[] }>,
  produce: (key: string, shape: readonly number[]) => Float32Array,
  metadata?: Record<string, string>,
): Promise<void> {
  if (!LITTLE_ENDIAN_HOST) throw new ModelError('writing safetensors needs a little-endian host');
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.key)) throw new ModelError(`duplicate tensor ${s.key}`);
    seen.add(s.key);
  }
  const header = safetensorsHeader(specs, metadata);
  const fh = await open(path, 'w');
  try {
    let pos = 0;
    const write = async (b: Uint8Array): Promise<void> => {
      let done = 0;
      while (done < b.byteLength) {
        const { bytesWritten } = await fh.write(b, done, b.byteLength - done, pos + done);
        done += bytesWritten;
      }
      pos += b.byteLength;
    };
    await write(header);
    for (const s of specs) {
      const data = produce(s.key, s.shape);
      if (data.length !== numel(s.shape)) {
        throw new ModelError(`${s.key}: ${data.length} values for shape ${JSON.stringify(s.shape)}`);
      }
      await write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  } finally {
    await fh.close();
  }
}

/** Write float32 tensors as a `.safetensors` file (dtype F32, header padded to 8 bytes). */
export async function writeSafetensors(
  path: string,
  weights: WeightMap,
  metadata?: Record<string, string>,
): Promise<void> {
  // Sorted keys, as the reference writer orders tensors of one dtype: byte-identical output for equal maps.
  const keys = [...weights.keys()].sort();
  for (const key of keys) {
    const t = weights.get(key) as HostTensor;
    if (t.data.length !== numel(t.shape)) {
      throw new ModelError(`${key}: ${t.data.length} values for shape ${JSON.stringify(t.shape)}`);
    }
  }
  const specs = keys.map((key) => ({ key, shape: (weights.get(key) as HostTensor).shape }));
  await writeSafetensorsFrom(path, specs, (key) => (weights.get(key) as HostTensor).data, metadata);
}
