import { DEFAULT_LIMITS } from '../../core/defaults.js';
import { UsageError } from '../../core/errors.js';
import type { FetchLimits, InputOptions, PairRef, ShardRef } from '../../core/types.js';
import { baseName } from '../location.js';
import type { Storage } from '../storage/storage.js';
import { planColumns } from './columns.js';
import { csvColumns, delimiterOf, readCsv } from './csv.js';
import { readFolder } from './folder.js';
import { jsonlColumns, readJsonl } from './jsonl.js';
import { parquetColumns, readParquet } from './parquet.js';
import { readWebDataset } from './webdataset.js';

/**
 * Every pair of a shard, in order, rejected rows included (records out = pairs in). `limits.maxBytes`
 * bounds the image bytes a reader holds for a pair (tar members).
 */
export function readShard(
  storage: Storage,
  shard: ShardRef,
  input: InputOptions,
  limits: Pick<FetchLimits, 'maxBytes'> = DEFAULT_LIMITS,
): AsyncGenerator<PairRef> {
  switch (shard.format) {
    case 'jsonl':
      return readJsonl(storage, shard, input);
    case 'csv':
    case 'tsv':
      return readCsv(storage, shard, input, delimiterOf(shard.format));
    case 'parquet':
      return readParquet(storage, shard, input);
    case 'webdataset':
      return readWebDataset(storage, shard, input, limits);
    case 'folder':
      return readFolder(storage, shard);
    default:
      throw new UsageError(`unknown input format ${(shard as ShardRef).format}`);
  }
}

/**
 * The column names of a manifest (CSV/TSV header, Parquet schema, first JSONL object); null for
 * tars and folders, and for a file that has none to show (empty, or a footer that cannot be
 * believed: reading its shard then fails with the reason).
 */
export async function manifestColumns(
  storage: Storage,
  uri: string,
  format: ShardRef['format'],
): Promise<string[] | null> {
  switch (format) {
    case 'jsonl':
      return jsonlColumns(storage, uri);
    case 'csv':
    case 'tsv':
      return csvColumns(storage, uri, delimiterOf(format));
    case 'parquet':
      return parquetColumns(storage, uri);
    default:
      return null;
  }
}

/** Refuses, before any pair is read, a manifest without the columns the run reads by. */
export async function checkColumns(
  storage: Storage,
  uri: string,
  format: ShardRef['format'],
  input: Pick<InputOptions, 'imageColumn' | 'textColumn'>,
): Promise<void> {
  const names = await manifestColumns(storage, uri, format);
  if (names !== null) planColumns(names, input, baseName(uri), format !== 'jsonl');
}
