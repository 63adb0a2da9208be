import { BadInputError } from '../../core/errors.js';
import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import type { Storage } from '../storage/storage.js';
import { badRow, invalidJson, type RowPosition, rowPosition, rowToPair, shardRows } from './row.js';
import { type Line, MAX_ROW_BYTES, openText, splitLines } from './text.js';

/** Non-blank lines of a JSONL file, each cut at `maxBytes` (then text null, unread). */
async function* jsonlLines(storage: Storage, uri: string, maxBytes: number): AsyncGenerator<Line> {
  const stream = await openText(storage, uri);
  try {
    yield* splitLines(stream, maxBytes);
  } finally {
    stream.destroy();
  }
}

/**
 * Non-blank lines of a JSONL file capfilt wrote (an output part). A record holds an input row's
 * metadata plus captions and scores, so it may be longer than a manifest row, but not without end.
 */
export async function* lines(storage: Storage, uri: string): AsyncGenerator<string> {
  const max = 4 * MAX_ROW_BYTES;
  for await (const line of jsonlLines(storage, uri, max)) {
    if (line.text === null) throw new BadInputError(uri, `line ${line.number} is longer than ${max} bytes`);
    yield line.text;
  }
}

/** Rows of a JSONL manifest: its non-blank lines, over-long ones included (they become rejected rows). */
export async function countJsonlRows(storage: Storage, uri: string): Promise<number> {
  let n = 0;
  for await (const _ of jsonlLines(storage, uri, MAX_ROW_BYTES)) n++;
  return n;
}

function lineToPair(line: Line, pos: RowPosition, input: InputOptions): PairRef {
  if (line.text === null) {
    return badRow(
      pos,
      `line ${line.number} is ${line.bytes} bytes, over the ${MAX_ROW_BYTES}-byte row limit`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(line.text);
  } catch (err) {
    return badRow(pos, `line ${line.number} is ${invalidJson(err, line.text, line.offset)}`);
  }
  return value && typeof value === 'object' && !Array.isArray(value)
    ? rowToPair(value as Record<string, unknown>, pos, input)
    : badRow(pos, `line ${line.number} is not a JSON object`);
}

export async function* readJsonl(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
  fileKey: string,
): AsyncGenerator<PairRef> {
  for await (const [line, row] of shardRows(jsonlLines(storage, shard.uri, MAX_ROW_BYTES), shard)) {
    yield lineToPair(line, rowPosition(shard, fileKey, row), input);
  }
}
