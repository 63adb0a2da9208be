import { type AsyncBuffer, type FileMetaData, parquetReadObjects, parquetSchema } from 'hyparquet';
import { BadInputError } from '../../core/errors.js';
import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import { baseName } from '../location.js';
import type { Storage } from '../storage/storage.js';
import { planColumns } from './columns.js';
import {
  checkedCompressors,
  checkedMetadata,
  checkPages,
  chunkRange,
  decodeError,
  MAX_GROUP_BYTES,
} from './parquet-checks.js';
import { rowPosition, rowToPair } from './row.js';

/** Rows decoded per hyparquet call: bounds memory on million-row LAION-style files. */
const CHUNK_ROWS = 2048;
/** hyparquet decodes a whole page per call, so a call spans at least the widest page, up to this. */
const MAX_CHUNK_ROWS = 65_536;

/**
 * Range reads against a local file or an S3 object: only the footer and needed column chunks
 * travel. A read outside the file or larger than a row group may be is refused, not attempted.
 */
export async function parquetBuffer(storage: Storage, uri: string): Promise<AsyncBuffer> {
  const byteLength = await storage.size(uri);
  return {
    byteLength,
    async slice(start: number, end = byteLength): Promise<ArrayBuffer> {
      if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end)) {
        throw new BadInputError(uri, `a read of bytes ${start}-${end} is not a byte range`);
      }
      if (end > byteLength) {
        throw new BadInputError(
          uri,
          `a read of bytes ${start}-${end} lies past the end of the file (${byteLength})`,
        );
      }
      if (end - start > MAX_GROUP_BYTES) {
        throw new BadInputError(
          uri,
          `a read of ${end - start} bytes exceeds the ${MAX_GROUP_BYTES}-byte limit`,
        );
      }
      const buf = await storage.readRange(uri, start, end);
      return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    },
  };
}

async function metadataOf(file: AsyncBuffer, uri: string): Promise<FileMetaData> {
  return checkedMetadata(uri, file.byteLength, (start, end) => Promise.resolve(file.slice(start, end)));
}

/**
 * The file's row count from its footer (checked), or null when the footer cannot be believed: the
 * plan then has no total for this file and reading its shard fails with the reason.
 */
export async function countParquetRows(storage: Storage, uri: string): Promise<number | null> {
  try {
    return Number((await metadataOf(await parquetBuffer(storage, uri), uri)).num_rows);
  } catch (err) {
    if (err instanceof BadInputError) return null;
    throw err;
  }
}

function plain(value: unknown): unknown {
  return typeof value === 'bigint' ? Number(value) : value;
}

/**
 * Row group `g`'s column chunks, read once and their pages checked before hyparquet decodes them;
 * every hyparquet read inside the group is served from these bytes (each chunk-sized read of a
 * group asks for the same ranges, which would otherwise travel again). `widest`: the most rows a
 * page of the group holds.
 */
async function loadGroup(
  file: AsyncBuffer,
  meta: FileMetaData,
  g: number,
  uri: string,
): Promise<{ file: AsyncBuffer; widest: number }> {
  const group = meta.row_groups[g];
  const ranges = group.columns.map(chunkRange);
  const lo = Math.min(...ranges.map((r) => r.start));
  const hi = Math.max(...ranges.map((r) => r.end));
  const span = await file.slice(lo, hi);
  const bytes = new Uint8Array(span);
  const bad = (message: string) => new BadInputError(uri, message);
  let widest = 0;
  ranges.forEach(({ start, end }, c) => {
    const where = `row group ${g}, column ${c}`;
    widest = Math.max(
      widest,
      checkPages(bytes.subarray(start - lo, end - lo), Number(group.num_rows), where, bad),
    );
  });
  const cache = new Map<string, ArrayBuffer>();
  const slice = (start: number, end = file.byteLength): ArrayBuffer | Promise<ArrayBuffer> => {
    if (start < lo || end > hi) return file.slice(start, end);
    if (start === lo && end === hi) return span;
    const key = `${start}:${end}`;
    let hit = cache.get(key);
    if (!hit) {
      hit = span.slice(start - lo, end - lo);
      cache.set(key, hit);
    }
    return hit;
  };
  return { file: { byteLength: file.byteLength, slice }, widest };
}

/** A file's top-level column names (an image struct is one column). */
function columnNames(metadata: FileMetaData): string[] {
  return parquetSchema(metadata).children.map((c) => c.element.name);
}

/** The columns of a Parquet file from its footer, or null when the footer cannot be believed. */
export async function parquetColumns(storage: Storage, uri: string): Promise<string[] | null> {
  try {
    return columnNames(await metadataOf(await parquetBuffer(storage, uri), uri));
  } catch (err) {
    if (err instanceof BadInputError) return null;
    throw err;
  }
}

export async function* readParquet(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
): AsyncGenerator<PairRef> {
  const file = await parquetBuffer(storage, shard.uri);
  const metadata = await metadataOf(file, shard.uri);
  const plan = planColumns(columnNames(metadata), input, baseName(shard.uri), true);
  const start = shard.rowStart ?? 0;
  const end = Math.min(shard.rowEnd ?? Number.POSITIVE_INFINITY, Number(metadata.num_rows));
  let groupStart = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const groupEnd = groupStart + Number(group.num_rows);
    const from = Math.max(start, groupStart);
    const to = Math.min(end, groupEnd);
    groupStart = groupEnd;
    if (from >= to) continue;
    // One load per row group: its bytes are dropped once the group is read.
    const loaded = await loadGroup(file, metadata, g, shard.uri);
    const step = Math.min(MAX_CHUNK_ROWS, Math.max(CHUNK_ROWS, loaded.widest));
    for (let chunk = from; chunk < to; chunk += step) {
      const want = Math.min(to, chunk + step) - chunk;
      const rows = await readRows(loaded.file, metadata, chunk, want, shard.uri);
      if (rows.length !== want) {
        throw new BadInputError(
          shard.uri,
          `row group ${g} gave ${rows.length} rows where ${want} were declared`,
        );
      }
      for (let i = 0; i < rows.length; i++) {
        const obj: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(rows[i])) obj[k] = plain(v);
        yield rowToPair(obj, rowPosition(shard, chunk + i), plan);
      }
    }
  }
}

/** Rows [rowStart, rowStart + count) decoded; a decoding failure names the rows, not their bytes. */
async function readRows(
  file: AsyncBuffer,
  metadata: FileMetaData,
  rowStart: number,
  count: number,
  uri: string,
): Promise<Record<string, unknown>[]> {
  try {
    return (await parquetReadObjects({
      file,
      metadata,
      rowStart,
      rowEnd: rowStart + count,
      compressors: checkedCompressors,
      // Whole column chunks only: those are the bytes whose pages were checked.
      useOffsetIndex: false,
    })) as Record<string, unknown>[];
  } catch (err) {
    if (err instanceof BadInputError) throw err;
    throw new BadInputError(
      uri,
      `rows ${rowStart}-${rowStart + count} cannot be decoded (${decodeError(err)})`,
      {
        cause: err,
      },
    );
  }
}
