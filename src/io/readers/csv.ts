import { type Info, parse } from 'csv-parse';
import type { InputOptions, PairRef, ShardRef } from '../../core/types.js';
import type { Storage } from '../storage/storage.js';
import { openText } from './jsonl.js';
import { badRow, rowPosition, rowToPair, shardRows } from './row.js';

type CsvRow = { row: Record<string, unknown> } | { bad: string };

/**
 * Data rows of a CSV/TSV file in order, as objects keyed by the header. Malformed records (an
 * unclosed quote, a wrong column count) come out as `bad` in their place instead of ending the file.
 */
async function* csvRows(storage: Storage, uri: string, delimiter: string): AsyncGenerator<CsvRow> {
  const stream = await openText(storage, uri);
  const parser = parse({
    delimiter,
    bom: true,
    relax_quotes: true,
    relax_column_count: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    info: true,
  });
  // Skips are reported by event at parse time, records later through iteration: number each skip
  // by the records parsed before it so that it is replayed in its place.
  const skips: { after: number; message: string }[] = [];
  parser.on('skip', (err: Error) => {
    skips.push({ after: parser.info.records, message: err.message });
  });
  stream.on('error', (err) => parser.destroy(err));
  stream.pipe(parser);
  let header: string[] | null = null;
  try {
    for await (const item of parser as AsyncIterable<{ record: string[]; info: Info }>) {
      while (header && skips.length > 0 && skips[0].after < item.info.records) {
        yield { bad: (skips.shift() as { message: string }).message };
      }
      if (!header) {
        header = item.record.map((h) => h.trim());
        skips.length = 0;
        continue;
      }
      if (item.record.length !== header.length) {
        yield { bad: `${item.record.length} fields where the header has ${header.length}` };
        continue;
      }
      const row: Record<string, unknown> = {};
      for (let i = 0; i < header.length; i++) row[header[i]] = item.record[i];
      yield { row };
    }
    if (header) for (const s of skips) yield { bad: s.message };
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

export async function* readCsv(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
  fileKey: string,
  delimiter: string,
): AsyncGenerator<PairRef> {
  for await (const [ev, row] of shardRows(csvRows(storage, shard.uri, delimiter), shard)) {
    const pos = rowPosition(shard, fileKey, row);
    yield 'bad' in ev ? badRow(pos, ev.bad) : rowToPair(ev.row, pos, input);
  }
}
