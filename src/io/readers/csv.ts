import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import { baseName } from '../location.js';
import type { Storage } from '../storage/storage.js';
import { type ColumnPlan, planColumns } from './columns.js';
import { badRow, rowPosition, rowToPair, shardRows } from './row.js';
import { type Line, MAX_ROW_BYTES, openText, splitLines } from './text.js';

type CsvRow = { row: Record<string, unknown> } | { bad: string };

/**
 * Most lines one record may span: a caption with line breaks inside quotes takes a few. A quote
 * left open longer than this is a stray quote, not a multi-line caption.
 */
const MAX_RECORD_LINES = 32;

/**
 * One CSV record, fed a physical line at a time (RFC 4180: a field that starts with a quote runs
 * to the closing quote, "" inside it is a quote, and line breaks inside it belong to it; a quote
 * inside an unquoted field is a plain character).
 */
class RecordParser {
  readonly fields: string[] = [];
  #value = '';
  #quoted = false;
  lines = 0;
  bytes = 0;

  constructor(readonly delimiter: string) {}

  /** 'done': the record ended with this line; 'open': a quoted field goes on; 'bad': a quote closes mid-field. */
  feed(text: string): 'done' | 'open' | 'bad' {
    this.lines++;
    this.bytes += Buffer.byteLength(text) + 1;
    const d = this.delimiter;
    let i = 0;
    if (this.#quoted) this.#value += '\n';
    for (;;) {
      if (this.#quoted) {
        const q = text.indexOf('"', i);
        if (q < 0) {
          this.#value += text.slice(i);
          return 'open';
        }
        this.#value += text.slice(i, q);
        if (text[q + 1] === '"') {
          this.#value += '"';
          i = q + 2;
          continue;
        }
        this.#quoted = false;
        this.fields.push(this.#value);
        this.#value = '';
        i = q + 1;
        if (i === text.length) return 'done';
        if (!text.startsWith(d, i)) return 'bad';
        i += d.length;
      } else if (text[i] === '"') {
        this.#quoted = true;
        i++;
      } else {
        const end = text.indexOf(d, i);
        if (end < 0) {
          this.fields.push(text.slice(i));
          return 'done';
        }
        this.fields.push(text.slice(i, end));
        i = end + d.length;
      }
    }
  }
}

type CsvRecord = { fields: string[]; line: number } | { bad: string; line: number };

/**
 * Records of a CSV/TSV file in order. A record whose quoting breaks (a quote left open past
 * MAX_RECORD_LINES lines, past MAX_ROW_BYTES or to the end of the file; a quote closing
 * mid-field) never swallows the lines after it: its first line becomes a rejected record and the
 * lines after it are read again as records of their own.
 */
async function* csvRecords(lines: AsyncIterable<Line>, delimiter: string): AsyncGenerator<CsvRecord> {
  const source = lines[Symbol.asyncIterator]();
  const again: Line[] = [];
  let held: Line[] = [];
  let parser = new RecordParser(delimiter);
  const next = async (): Promise<Line | null> => {
    const line = again.shift();
    if (line) return line;
    const r = await source.next();
    return r.done ? null : r.value;
  };
  /** The held record is broken: reject its first line, read the rest again. */
  const broken = (why: string): CsvRecord => {
    const [first, ...rest] = held;
    again.unshift(...rest);
    held = [];
    parser = new RecordParser(delimiter);
    return { bad: `line ${first.number}: ${why}`, line: first.number };
  };
  for (;;) {
    const line = await next();
    if (!line) {
      if (held.length === 0) return;
      yield broken('a quoted field is never closed');
      continue;
    }
    if (line.text === null) {
      if (held.length > 0) yield broken('a quoted field is never closed');
      yield {
        bad: `line ${line.number} is ${line.bytes} bytes, over the ${MAX_ROW_BYTES}-byte row limit`,
        line: line.number,
      };
      continue;
    }
    if (held.length === 0 && line.text.trim() === '') continue;
    held.push(line);
    const state = parser.feed(line.text);
    if (state === 'done') {
      yield { fields: parser.fields, line: held[0].number };
      held = [];
      parser = new RecordParser(delimiter);
    } else if (state === 'bad') {
      yield broken('a quote closes a field before its end');
    } else if (parser.lines >= MAX_RECORD_LINES || parser.bytes > MAX_ROW_BYTES) {
      yield broken(`a quoted field is not closed within ${MAX_RECORD_LINES} lines or ${MAX_ROW_BYTES} bytes`);
    }
  }
}

/**
 * Data rows of a CSV/TSV file in order, as objects keyed by the header. Malformed records (broken
 * quoting, a wrong column count, an over-long row) come out as `bad` in their place, one per line
 * they cover, instead of ending the file or merging rows.
 */
async function* csvRows(
  storage: Storage,
  uri: string,
  delimiter: string,
  onHeader: (names: string[]) => void = () => undefined,
): AsyncGenerator<CsvRow> {
  const stream = await openText(storage, uri);
  let header: string[] | null = null;
  try {
    for await (const record of csvRecords(splitLines(stream, MAX_ROW_BYTES, true), delimiter)) {
      if (!header) {
        // Lines before the header are not rows.
        if ('fields' in record) {
          header = record.fields.map((h) => h.trim());
          onHeader(header);
        }
        continue;
      }
      if ('bad' in record) yield { bad: record.bad };
      else if (record.fields.length !== header.length) {
        yield {
          bad: `line ${record.line}: ${record.fields.length} fields where the header has ${header.length}`,
        };
      } else {
        const row: Record<string, unknown> = {};
        for (let i = 0; i < header.length; i++) row[header[i]] = record.fields[i];
        yield { row };
      }
    }
  } finally {
    stream.destroy();
  }
}

export function delimiterOf(format: 'csv' | 'tsv'): string {
  return format === 'tsv' ? '\t' : ',';
}

export async function countCsvRows(storage: Storage, uri: string, delimiter: string): Promise<number> {
  let n = 0;
  for await (const _ of csvRows(storage, uri, delimiter)) n++;
  return n;
}

/** The header of a CSV/TSV file (read no further than its first row), or null for an empty file. */
export async function csvColumns(storage: Storage, uri: string, delimiter: string): Promise<string[] | null> {
  let header: string[] | null = null;
  for await (const _ of csvRows(storage, uri, delimiter, (names) => {
    header = names;
  }))
    break;
  return header;
}

export async function* readCsv(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
  delimiter: string,
): AsyncGenerator<PairRef> {
  let plan: ColumnPlan | null = null;
  const onHeader = (names: string[]) => {
    plan = planColumns(names, input, baseName(shard.uri), true);
  };
  for await (const [ev, row] of shardRows(csvRows(storage, shard.uri, delimiter, onHeader), shard)) {
    const pos = rowPosition(shard, row);
    // Rows come after the header, so the plan is set.
    yield 'bad' in ev ? badRow(pos, ev.bad) : rowToPair(ev.row, pos, plan as unknown as ColumnPlan);
  }
}
