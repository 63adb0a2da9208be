import { createHash } from 'node:crypto';
import { errorMessage } from '../../core/errors.js';
import type { PairRef, ShardRef } from '../../core/types.js';
import { resolveRef } from '../location.js';
import { type ColumnPlan, rowColumns } from './columns.js';

/** Where a row sits: its shard, its position there and its row number in the file. */
export interface RowPosition {
  shardId: string;
  index: number;
  /** Row number within the whole file: part of a derived key, independent of the shard size. */
  row: number;
  /** The manifest's URI: relative image paths resolve against its folder. */
  manifestUri: string;
}

/** File row `row` of a manifest shard. */
export function rowPosition(shard: ShardRef, row: number): RowPosition {
  return { shardId: shard.id, index: row - (shard.rowStart ?? 0), row, manifestUri: shard.uri };
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

const rowNumber = (row: number) => String(row).padStart(9, '0');

/**
 * The key of a row without a key column: its row number in the file and the first 8 hex digits
 * of SHA-256 over the image reference as the manifest writes it (or the image bytes) and the
 * text. Nothing of the manifest's name or place goes in: renaming or moving a manifest keeps its
 * keys, and so its synthetic captions (seeded by key).
 */
export function derivedKey(row: number, image: string | Uint8Array | null, text: string | null): string {
  const hash = createHash('sha256')
    .update(image ?? '')
    .update('\u0000')
    .update(text ?? '')
    .digest('hex');
  return `${rowNumber(row)}-${hash.slice(0, 8)}`;
}

function asBytes(v: unknown): Uint8Array | null {
  if (v instanceof Uint8Array) return v;
  if (v && typeof v === 'object' && 'bytes' in v) {
    const b = (v as { bytes: unknown }).bytes;
    if (b instanceof Uint8Array && b.length > 0) return b;
  }
  return null;
}

function present(v: unknown): boolean {
  return v !== undefined && v !== null && v !== '';
}

/** The row's other columns, as img2dataset keeps them: binary values (image bytes) left out. */
function metaOf(row: Record<string, unknown>, used: (string | null)[]): Record<string, unknown> {
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (!used.includes(k) && asBytes(v) === null && typeof v !== 'bigint') meta[k] = v;
  }
  return meta;
}

function keyOf(row: Record<string, unknown>, column: string | null): string | null {
  const v = column === null ? undefined : row[column];
  return (typeof v === 'string' && v !== '') || typeof v === 'number' ? String(v) : null;
}

/** A manifest row (JSONL object, CSV record, Parquet row) as a pair, or a rejected marker. */
export function rowToPair(row: Record<string, unknown>, pos: RowPosition, plan: ColumnPlan): PairRef {
  const cols = rowColumns(row, plan);
  const imageValue = cols.image === null ? undefined : row[cols.image];
  const textValue = cols.text === null ? undefined : row[cols.text];
  const text = present(textValue) ? String(textValue) : null;
  const bytes = asBytes(imageValue);
  const ref = typeof imageValue === 'string' ? imageValue.trim() : '';
  const pair: PairRef = {
    key: keyOf(row, cols.key) ?? derivedKey(pos.row, bytes ?? (ref || null), text),
    shardId: pos.shardId,
    index: pos.index,
    source: `${pos.manifestUri}#${pos.row}`,
    image: null,
    text,
    meta: metaOf(row, [cols.image, cols.text, cols.key]),
  };
  if (bytes) {
    const embedded = (imageValue as { path?: unknown }).path;
    pair.image = {
      kind: 'inline',
      bytes,
      name: typeof embedded === 'string' && embedded ? embedded : pair.key,
    };
  } else if (ref !== '') {
    const uri = resolveRef(ref, pos.manifestUri);
    pair.image = { kind: 'location', uri };
    pair.source = uri;
  } else {
    const where = cols.image === null ? 'no image column' : `no image in column '${cols.image}'`;
    pair.invalid = { reason: 'missing_image', message: `row ${pos.row} has ${where}` };
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
    key: `${rowNumber(pos.row)}-bad`,
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
