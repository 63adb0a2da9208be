import { BadInputError } from '../../core/errors.js';
import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import { baseName } from '../location.js';
import type { Storage } from '../storage/storage.js';
import { type ColumnPlan, planColumns, rowByRowColumns } from './columns.js';
import { badRow, invalidJson, rowPosition, rowToPair } from './row.js';
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

/** The line's JSON object, or why it is not one. */
function parseObject(line: Line): { row: Record<string, unknown> } | { bad: string } {
  if (line.text === null) {
    return { bad: `line ${line.number} is ${line.bytes} bytes, over the ${MAX_ROW_BYTES}-byte row limit` };
  }
  let value: unknown;
  try {
    value = JSON.parse(line.text);
  } catch (err) {
    return { bad: `line ${line.number} is ${invalidJson(err, line.text, line.offset)}` };
  }
  return value && typeof value === 'object' && !Array.isArray(value)
    ? { row: value as Record<string, unknown> }
    : { bad: `line ${line.number} is not a JSON object` };
}

/** The fields of the first JSON object of a manifest: its columns, or null when no line is one. */
export async function jsonlColumns(storage: Storage, uri: string): Promise<string[] | null> {
  for await (const line of jsonlLines(storage, uri, MAX_ROW_BYTES)) {
    const parsed = parseObject(line);
    if ('row' in parsed) return Object.keys(parsed.row);
  }
  return null;
}

/**
 * Pairs of a JSONL shard. The file's columns come from its first JSON object (read on the same
 * stream, though it may lie before the shard's rows); a row without one of them falls back to the
 * recognised names it has, as JSON objects may differ from row to row.
 */
export async function* readJsonl(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
): AsyncGenerator<PairRef> {
  const start = shard.rowStart ?? 0;
  const end = shard.rowEnd ?? Number.POSITIVE_INFINITY;
  const file = baseName(shard.uri);
  let plan: ColumnPlan | null = null;
  let row = 0;
  for await (const line of jsonlLines(storage, shard.uri, MAX_ROW_BYTES)) {
    if (row >= end) return;
    const inShard = row >= start;
    const parsed = inShard || plan === null ? parseObject(line) : null;
    if (parsed && 'row' in parsed) plan ??= planColumns(Object.keys(parsed.row), input, file, false);
    if (inShard && parsed) {
      const pos = rowPosition(shard, row);
      yield 'row' in parsed
        ? rowToPair(parsed.row, pos, plan ?? rowByRowColumns(input))
        : badRow(pos, parsed.bad);
    }
    row++;
  }
}
