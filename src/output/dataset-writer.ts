/** The clean dataset a shard writes beside its records, whichever its format. */
import type { DatasetFormat, OutputRecord } from '../core/types.js';
import { joinUri } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { datasetName } from './layout.js';
import { ParquetDatasetWriter } from './parquet-writer.js';
import { WebDatasetWriter } from './webdataset-writer.js';

export type DatasetFileFormat = Exclude<DatasetFormat, 'jsonl'>;

/** A dataset file being written: samples in, then one atomic commit (or an abort that leaves nothing). */
export interface DatasetWriter {
  readonly uri: string;
  /** Adds a record of the dataset; `image`: its original bytes (the WebDataset carries them). */
  add(record: OutputRecord, image: Uint8Array | undefined): Promise<void>;
  /** Makes the file visible under its name; returns the samples (images) written. */
  commit(): Promise<number>;
  abort(): Promise<void>;
}

/** A record of the clean dataset: it reached the models (or is human) and kept a text. */
export function inDataset(r: OutputRecord): boolean {
  return r.status === 'ok' && r.texts.length > 0;
}

/** Whether a format carries the images' bytes (the run then keeps them until they are written). */
export function carriesImages(format: DatasetFormat): boolean {
  return format === 'webdataset';
}

/** Opens `<folder>/part-<shard>.<ext>` for writing. */
export async function openDatasetWriter(
  storage: Storage,
  folder: string,
  shardId: string,
  format: DatasetFileFormat,
): Promise<DatasetWriter> {
  const uri = joinUri(folder, datasetName(shardId, format));
  return format === 'webdataset'
    ? WebDatasetWriter.open(storage, uri)
    : new ParquetDatasetWriter(storage, uri);
}
