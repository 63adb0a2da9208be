import { DEFAULT_LIMITS } from '../../core/defaults.js';
import { UsageError } from '../../core/errors.js';
import type { FetchLimits, InputOptions, PairRef, ShardRef } from '../../core/types.js';
import { baseName } from '../location.js';
import type { Storage } from '../storage/storage.js';
import { delimiterOf, readCsv } from './csv.js';
import { readFolder } from './folder.js';
import { fileKeyOf } from './formats.js';
import { readJsonl } from './jsonl.js';
import { readParquet } from './parquet.js';
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
  const fileKey = fileKeyOf(baseName(shard.uri));
  switch (shard.format) {
    case 'jsonl':
      return readJsonl(storage, shard, input, fileKey);
    case 'csv':
    case 'tsv':
      return readCsv(storage, shard, input, fileKey, delimiterOf(shard.format));
    case 'parquet':
      return readParquet(storage, shard, input, fileKey);
    case 'webdataset':
      return readWebDataset(storage, shard, input, limits);
    case 'folder':
      return readFolder(storage, shard);
    default:
      throw new UsageError(`unknown input format ${(shard as ShardRef).format}`);
  }
}
