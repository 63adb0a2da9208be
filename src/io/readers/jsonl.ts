import { createInterface } from 'node:readline';
import { pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { errorMessage } from '../../core/errors.js';
import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import type { Storage } from '../storage/storage.js';
import { badRow, type RowPosition, rowPosition, rowToPair, shardRows } from './row.js';

/**
 * `raw` gunzipped. Destroying the result (a reader that stops early) also destroys `raw`, so its
 * file descriptor or S3 socket is released, and an error on `raw` reaches the result.
 */
export function gunzip(raw: Readable): Readable {
  // The error is already on the returned stream (pipeline destroys every stream with it).
  return pipeline(raw, createGunzip(), () => undefined);
}

/** A text stream of the file, gunzipped when its name ends in .gz. */
export async function openText(storage: Storage, uri: string): Promise<Readable> {
  const raw = await storage.readStream(uri);
  return /\.gz$/i.test(uri) ? gunzip(raw) : raw;
}

/** Non-blank lines of a JSONL file (a manifest or an output part); each is one row. */
export async function* lines(storage: Storage, uri: string): AsyncGenerator<string> {
  const stream = await openText(storage, uri);
  const rl = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  try {
    for await (const line of rl) {
      if (line.trim() !== '') yield line;
    }
  } finally {
    rl.close();
    stream.destroy();
  }
}

export async function countJsonlRows(storage: Storage, uri: string): Promise<number> {
  let n = 0;
  for await (const _ of lines(storage, uri)) n++;
  return n;
}

function lineToPair(line: string, pos: RowPosition, input: InputOptions): PairRef {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    return badRow(pos, `invalid JSON (${errorMessage(err)})`);
  }
  return value && typeof value === 'object' && !Array.isArray(value)
    ? rowToPair(value as Record<string, unknown>, pos, input)
    : badRow(pos, 'not a JSON object');
}

export async function* readJsonl(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
  fileKey: string,
): AsyncGenerator<PairRef> {
  for await (const [line, row] of shardRows(lines(storage, shard.uri), shard)) {
    yield lineToPair(line, rowPosition(shard, fileKey, row), input);
  }
}
