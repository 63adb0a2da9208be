import { ModelError } from '../../core/errors.js';

/** One member of a zip archive whose data is stored uncompressed. */
export interface ZipEntry {
  name: string;
  /** Byte offset of the member's data inside the archive buffer. */
  dataOffset: number;
  size: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const U32_MAX = 0xffffffff;

function u64(dv: DataView, at: number): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelError('zip: 64-bit field out of range');
  return Number(v);
}

/**
 * Read the central directory of a zip archive held in memory (zip64 aware). Only stored
 * (uncompressed) members are accepted: torch.save never compresses, and anything else would
 * need an inflater for a file we would refuse anyway.
 */
export function readZipDirectory(buf: Uint8Array, source: string): Map<string, ZipEntry> {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = buf.byteLength;
  let eocd = -1;
  for (let i = len - 22; i >= Math.max(0, len - 22 - 0xffff); i--) {
    if (dv.getUint32(i, true) === EOCD_SIG) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ModelError(`${source}: not a zip archive (no end-of-central-directory record)`);
  let count = dv.getUint16(eocd + 10, true);
  let cdSize = dv.getUint32(eocd + 12, true);
  let cdOffset = dv.getUint32(eocd + 16, true);
  if ((count === 0xffff || cdSize === U32_MAX || cdOffset === U32_MAX) && eocd >= 20) {
    const loc = eocd - 20;
    if (dv.getUint32(loc, true) === ZIP64_LOCATOR_SIG) {
      const z64 = u64(dv, loc + 8);
      if (z64 + 56 > len || dv.getUint32(z64, true) !== ZIP64_EOCD_SIG) {
        throw new ModelError(`${source}: zip64 end-of-central-directory record is missing`);
      }
      count = u64(dv, z64 + 32);
      cdSize = u64(dv, z64 + 40);
      cdOffset = u64(dv, z64 + 48);
    }
  }
  if (cdOffset + cdSize > len) throw new ModelError(`${source}: zip central directory lies outside the file`);
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  const decoder = new TextDecoder('utf-8', { fatal: false });
  for (let n = 0; n < count; n++) {
    if (p + 46 > len || dv.getUint32(p, true) !== CENTRAL_SIG) {
      throw new ModelError(`${source}: corrupt zip central directory entry ${n}`);
    }
    const method = dv.getUint16(p + 10, true);
    let compSize = dv.getUint32(p + 20, true);
    let size = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localOffset = dv.getUint32(p + 42, true);
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    if (extraEnd + commentLen > len) {
      throw new ModelError(`${source}: zip central directory entry ${n} runs past the end of the file`);
    }
    const name = decoder.decode(buf.subarray(p + 46, e));
    // zip64 extra field: the 0xffffffff fields appear in it in this order.
    while (e + 4 <= extraEnd) {
      const id = dv.getUint16(e, true);
      const fieldEnd = e + 4 + dv.getUint16(e + 2, true);
      if (fieldEnd > extraEnd) throw new ModelError(`${source}: zip member ${name}: corrupt extra field`);
      if (id === 0x0001) {
        let q = e + 4;
        const next = (): number => {
          if (q + 8 > fieldEnd) throw new ModelError(`${source}: zip member ${name}: short zip64 field`);
          q += 8;
          return u64(dv, q - 8);
        };
        if (size === U32_MAX) size = next();
        if (compSize === U32_MAX) compSize = next();
        if (localOffset === U32_MAX) localOffset = next();
      }
      e = fieldEnd;
    }
    p = extraEnd + commentLen;
    if (name.endsWith('/')) continue;
    if (method !== 0)
      throw new ModelError(`${source}: zip member ${name} is compressed (method ${method}); expected stored`);
    if (compSize !== size) throw new ModelError(`${source}: zip member ${name}: stored sizes disagree`);
    if (localOffset + 30 > len || dv.getUint32(localOffset, true) !== LOCAL_SIG) {
      throw new ModelError(`${source}: zip member ${name}: bad local header`);
    }
    const dataOffset =
      localOffset + 30 + dv.getUint16(localOffset + 26, true) + dv.getUint16(localOffset + 28, true);
    if (dataOffset + size > len)
      throw new ModelError(`${source}: zip member ${name} runs past the end of the file`);
    entries.set(name, { name, dataOffset, size });
  }
  return entries;
}
