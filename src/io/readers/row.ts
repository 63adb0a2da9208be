import { errorMessage } from '../../core/errors.js';
import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import { resolveRef } from '../location.js';

const IMAGE_FALLBACKS = ['url', 'path', 'key'];
const TEXT_FALLBACKS = ['text'];
const KEY_FIELDS = ['key', 'uid', 'id', 'sample_id'];

/** Where a row sits: its shard, its position there and its row number in the file (for default keys). */
export interface RowPosition {
  shardId: string;
  index: number;
  /** Row number within the whole file: a default key that does not depend on the shard size. */
  row: number;
  /** Stable name of the file for default keys. */
  fileKey: string;
  /** The manifest's URI: relative image paths resolve against its folder. */
  manifestUri: string;
}

/** File row `row` of a manifest shard. */
export function rowPosition(shard: ShardRef, fileKey: string, row: number): RowPosition {
  return { shardId: shard.id, index: row - (shard.rowStart ?? 0), row, fileKey, manifestUri: shard.uri };
}

/**
 * The rows of a file that fall in the shard's row range, with their file row numbers. Formats
 * without random access are read from the top, and the rest of the file is left unread.
 */
export async function* shardRows<T>(rows: AsyncIterable<T>, shard: ShardRef): AsyncGenerator<[T, number]> {
  const start = shard.rowStart ?? 0;
  const end = shard.rowEnd ?? Number.POSITIVE_INFINITY;
  let row = 0;
  for await (const item of rows) {
    if (row >= end) return;
    if (row >= start) yield [item, row];
    row++;
  }
}

export function defaultKey(pos: RowPosition): string {
  return `${pos.fileKey}-${String(pos.row).padStart(9, '0')}`;
}

function pick(
  row: Record<string, unknown>,
  primary: string,
  fallbacks: string[],
): { column: string; value: unknown } | null {
  for (const column of [primary, ...fallbacks.filter((c) => c !== primary)]) {
    const v = row[column];
    if (v !== undefined && v !== null && v !== '') return { column, value: v };
  }
  return null;
}

function asBytes(v: unknown): Uint8Array | null {
  if (v instanceof Uint8Array) return v;
  if (v && typeof v === 'object' && 'bytes' in v) {
    const b = (v as { bytes: unknown }).bytes;
    if (b instanceof Uint8Array && b.length > 0) return b;
  }
  return null;
}

/** A manifest row (JSONL object, CSV record, Parquet row) as a pair, or a rejected marker. */
export function rowToPair(row: Record<string, unknown>, pos: RowPosition, input: InputOptions): PairRef {
  const image = pick(row, input.imageColumn, IMAGE_FALLBACKS);
  const text = pick(row, input.textColumn, TEXT_FALLBACKS);
  const keyField = KEY_FIELDS.find(
    (f) => f !== image?.column && (typeof row[f] === 'string' || typeof row[f] === 'number') && row[f] !== '',
  );
  const key = keyField ? String(row[keyField]) : defaultKey(pos);
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (k !== image?.column && k !== text?.column && !(v instanceof Uint8Array) && typeof v !== 'bigint')
      meta[k] = v;
  }
  const pair: PairRef = {
    key,
    shardId: pos.shardId,
    index: pos.index,
    source: '',
    image: null,
    text: typeof text?.value === 'string' ? text.value : text ? String(text.value) : null,
    meta,
  };
  const bytes = image ? asBytes(image.value) : null;
  const embeddedPath =
    image && typeof image.value === 'object' && image.value && 'path' in image.value
      ? String((image.value as { path: unknown }).path ?? '')
      : '';
  if (bytes) {
    pair.image = { kind: 'inline', bytes, name: embeddedPath || key };
    pair.source = `${pos.manifestUri}#${pos.row}`;
  } else if (image && typeof image.value === 'string' && image.value.trim() !== '') {
    const uri = resolveRef(image.value.trim(), pos.manifestUri);
    pair.image = { kind: 'location', uri };
    pair.source = uri;
  } else {
    pair.source = `${pos.manifestUri}#${pos.row}`;
    pair.invalid = {
      reason: 'missing_image',
      message: `row ${pos.row} has no image reference (columns ${[input.imageColumn, ...IMAGE_FALLBACKS].join('/')})`,
    };
    return pair;
  }
  if (pair.text === null || pair.text.trim() === '') {
    pair.invalid = { reason: 'empty_text', message: `row ${pos.row} has no text` };
  }
  return pair;
}

/** A row that could not be parsed at all. */
export function badRow(pos: RowPosition, message: string): PairRef {
  return {
    key: defaultKey(pos),
    shardId: pos.shardId,
    index: pos.index,
    source: `${pos.manifestUri}#${pos.row}`,
    image: null,
    text: null,
    meta: {},
    invalid: { reason: 'bad_row', message: `row ${pos.row}: ${message}` },
  };
}

/**
 * "not valid JSON (byte offset N)" for a JSON.parse failure on `text`, which starts at byte
 * `offset` of its file: where the parse failed when the engine says, never the text itself
 * (JSON.parse's own message quotes it).
 */
export function invalidJson(err: unknown, text: string, offset: number): string {
  const message = errorMessage(err);
  const at = /at position (\d+)/.exec(message);
  const chars = at ? Number(at[1]) : /end of JSON input/.test(message) ? text.length : 0;
  return `not valid JSON (byte offset ${offset + Buffer.byteLength(text.slice(0, chars))})`;
}
