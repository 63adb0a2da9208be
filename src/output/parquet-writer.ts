/**
 * A shard's clean dataset as Parquet, one row per kept text (a training pair) with its scores,
 * for DuckDB, pandas and Hugging Face `datasets`. Images stay where `source` says; the
 * WebDataset format carries their bytes.
 */
import { type ColumnSource, parquetWriteBuffer } from 'hyparquet-writer';
import type { OutputRecord } from '../core/types.js';
import type { Storage } from '../io/storage/storage.js';

/** One kept text of one image. */
export interface DatasetRow {
  key: string;
  source: string;
  text: string;
  /** Where the text came from: the web text, a synthetic caption, or a human annotation. */
  kind: 'web' | 'synthetic' | 'human';
  itm: number | null;
  itc: number | null;
  width: number | null;
  height: number | null;
  shard: string;
  index: number;
  meta: Record<string, unknown>;
}

/** The rows of a record: one per kept text, scored as the record scored it. */
export function datasetRows(r: OutputRecord): DatasetRow[] {
  return r.texts.map((text) => {
    const base = {
      key: r.key,
      source: r.source,
      text,
      width: r.width,
      height: r.height,
      shard: r.shard,
      index: r.index,
      meta: r.meta ?? {},
    };
    if (r.human) return { ...base, kind: 'human', itm: null, itc: null };
    if (r.web?.kept && r.web.text === text) return { ...base, kind: 'web', itm: r.web.itm, itc: r.web.itc };
    const s = r.synthetic.find((c) => c.kept && c.text === text);
    return { ...base, kind: 'synthetic', itm: s?.itm ?? null, itc: s?.itc ?? null };
  });
}

/** Column order and types of the file (its schema, documented in examples/README.md). */
const COLUMNS: { name: keyof DatasetRow; type: ColumnSource['type'] }[] = [
  { name: 'key', type: 'STRING' },
  { name: 'source', type: 'STRING' },
  { name: 'text', type: 'STRING' },
  { name: 'kind', type: 'STRING' },
  { name: 'itm', type: 'DOUBLE' },
  { name: 'itc', type: 'DOUBLE' },
  { name: 'width', type: 'INT32' },
  { name: 'height', type: 'INT32' },
  { name: 'shard', type: 'STRING' },
  { name: 'index', type: 'INT32' },
  { name: 'meta', type: 'JSON' },
];

/** The rows as a Parquet file (snappy); an empty shard gives a valid file with no rows. */
export function parquetOf(rows: readonly DatasetRow[]): Uint8Array {
  const buffer = parquetWriteBuffer({
    columnData: COLUMNS.map(({ name, type }) => ({ name, type, data: rows.map((r) => r[name]) })),
    createdBy: 'capfilt',
  });
  return new Uint8Array(buffer);
}

/**
 * Collects a shard's rows (texts and scores only: a shard's worth fits in memory) and writes the
 * file in one atomic write on commit.
 */
export class ParquetDatasetWriter {
  readonly uri: string;
  #storage: Storage;
  #rows: DatasetRow[] = [];
  #samples = 0;

  constructor(storage: Storage, uri: string) {
    this.#storage = storage;
    this.uri = uri;
  }

  async add(record: OutputRecord): Promise<void> {
    this.#rows.push(...datasetRows(record));
    this.#samples++;
  }

  async commit(): Promise<number> {
    await this.#storage.write(this.uri, parquetOf(this.#rows));
    return this.#samples;
  }

  async abort(): Promise<void> {
    this.#rows = [];
  }
}
