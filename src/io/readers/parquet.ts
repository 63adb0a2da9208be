import { type AsyncBuffer, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { InputOptions, PairRef, ShardRef } from '../../pipeline/types.js';
import type { Storage } from '../location.js';
import { type RowPosition, rowToPair } from './row.js';

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

export async function* readParquet(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
  fileKey: string,
): AsyncGenerator<PairRef> {
  const file = await parquetBuffer(storage, shard.uri);
  const metadata = await parquetMetadataAsync(file);
  const total = Number(metadata.num_rows);
  const start = shard.rowStart ?? 0;
  const end = Math.min(shard.rowEnd ?? total, total);
  for (let chunk = start; chunk < end; chunk += CHUNK_ROWS) {
    const rows = (await parquetReadObjects({
      file,
      metadata,
      rowStart: chunk,
      rowEnd: Math.min(end, chunk + CHUNK_ROWS),
      compressors,
    })) as Record<string, unknown>[];
    for (let i = 0; i < rows.length; i++) {
      const row = chunk + i;
      const pos: RowPosition = {
        shardId: shard.id,
        index: row - start,
        row,
        fileKey,
        manifestUri: shard.uri,
      };
      const obj: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(rows[i])) obj[k] = plain(v);
      yield rowToPair(obj, pos, input);
    }
  }
}
