import { type AsyncBuffer, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import type { Storage } from '../storage/storage.js';
import { rowPosition, rowToPair } from './row.js';

/** Rows decoded per hyparquet call: bounds memory on million-row LAION-style files. */
const CHUNK_ROWS = 2048;

/** Range reads against a local file or an S3 object: only the footer and needed column chunks travel. */
export async function parquetBuffer(storage: Storage, uri: string): Promise<AsyncBuffer> {
  const byteLength = await storage.size(uri);
  return {
    byteLength,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const buf = await storage.readRange(uri, start, end ?? byteLength);
      return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    },
  };
}

export async function countParquetRows(storage: Storage, uri: string): Promise<number> {
  const meta = await parquetMetadataAsync(await parquetBuffer(storage, uri));
  return Number(meta.num_rows);
}

function plain(value: unknown): unknown {
  return typeof value === 'bigint' ? Number(value) : value;
}

/**
 * Slices fetched once: every CHUNK_ROWS read of a row group asks for the same column-chunk byte
 * ranges, which would otherwise travel again (from S3, the whole row group) for each chunk.
 */
function memoized(file: AsyncBuffer): AsyncBuffer {
  const cache = new Map<string, Promise<ArrayBuffer>>();
  return {
    byteLength: file.byteLength,
    slice(start: number, end?: number): Promise<ArrayBuffer> {
      const key = `${start}:${end ?? ''}`;
      let hit = cache.get(key);
      if (!hit) {
        hit = Promise.resolve(file.slice(start, end));
        cache.set(key, hit);
      }
      return hit;
    },
  };
}

export async function* readParquet(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
  fileKey: string,
): AsyncGenerator<PairRef> {
  const file = await parquetBuffer(storage, shard.uri);
  const metadata = await parquetMetadataAsync(file);
  const start = shard.rowStart ?? 0;
  const end = Math.min(shard.rowEnd ?? Number.POSITIVE_INFINITY, Number(metadata.num_rows));
  let groupStart = 0;
  for (const group of metadata.row_groups) {
    const groupEnd = groupStart + Number(group.num_rows);
    const from = Math.max(start, groupStart);
    const to = Math.min(end, groupEnd);
    groupStart = groupEnd;
    if (from >= to) continue;
    // One cache per row group: its bytes are dropped once the group is read.
    const groupFile = memoized(file);
    for (let chunk = from; chunk < to; chunk += CHUNK_ROWS) {
      const rows = (await parquetReadObjects({
        file: groupFile,
        metadata,
        rowStart: chunk,
        rowEnd: Math.min(to, chunk + CHUNK_ROWS),
        compressors,
      })) as Record<string, unknown>[];
      for (let i = 0; i < rows.length; i++) {
        const obj: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(rows[i])) obj[k] = plain(v);
        yield rowToPair(obj, rowPosition(shard, fileKey, chunk + i), input);
      }
    }
  }
}
