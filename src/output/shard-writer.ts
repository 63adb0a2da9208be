import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { errorMessage, ShardError } from '../core/errors.js';
import type {
  DatasetFormat,
  OutputRecord,
  RecordOptions,
  ShardRef,
  ShardStats,
  StageTimings,
} from '../core/types.js';
import { baseName, joinUri } from '../io/location.js';
import type { AtomicWriter, Storage } from '../io/storage/storage.js';
import {
  type DatasetFileFormat,
  type DatasetWriter,
  inDataset,
  openDatasetWriter,
} from './dataset-writer.js';
import {
  type Compression,
  DATASET_EXTENSIONS,
  datasetName,
  type ShardOutputNames,
  shardOutputNames,
} from './layout.js';
import { StatsAccumulator } from './stats.js';
import { writeChunk } from './streams.js';

/**
 * Streams one shard's records to `part-<shard>.jsonl[.gz]` (and its kept samples to
 * `part-<shard>.tar|.parquet` with `--output-format`) through atomic writers, then writes
 * `part-<shard>.stats.json` last as the completion marker. An aborted or crashed shard leaves no
 * data file under its final name and no marker.
 */
export class ShardWriter {
  readonly names: ShardOutputNames;
  readonly stats = new StatsAccumulator();
  #writer: AtomicWriter;
  #sink: Writable;
  #storage: Storage;
  #shard: ShardRef;
  #closed = false;
  /** The clean dataset file written beside the records (`--output-format`), if any. */
  #dataset: { format: DatasetFileFormat; writer: DatasetWriter } | null = null;

  private constructor(
    storage: Storage,
    shard: ShardRef,
    names: ShardOutputNames,
    writer: AtomicWriter,
    sink: Writable,
  ) {
    this.#storage = storage;
    this.#shard = shard;
    this.names = names;
    this.#writer = writer;
    this.#sink = sink;
  }

  static async open(
    storage: Storage,
    output: string,
    shard: ShardRef,
    compression: Compression = 'none',
    format: DatasetFormat = 'jsonl',
  ): Promise<ShardWriter> {
    const names = shardOutputNames(output, shard.id, compression);
    let writer: AtomicWriter;
    try {
      // A stale marker from an earlier run must not vouch for the data being rewritten now, nor
      // a dataset file of another format (or none asked for now) outlive the records it was made from.
      await storage.delete(names.stats).catch(() => undefined);
      for (const other of Object.keys(DATASET_EXTENSIONS) as DatasetFileFormat[]) {
        if (other !== format)
          await storage.delete(joinUri(output, datasetName(shard.id, other))).catch(() => undefined);
      }
      writer = await storage.createAtomicWriter(names.data);
    } catch (err) {
      throw new ShardError(shard.id, `cannot write ${names.data}: ${(err as Error).message}`, { cause: err });
    }
    let sink: Writable = writer.stream;
    if (compression === 'gzip') {
      const gz = createGzip();
      // end: false — the atomic writer ends its own stream on commit.
      gz.pipe(writer.stream, { end: false });
      gz.on('error', (err) => writer.stream.destroy(err));
      writer.stream.on('error', (err) => gz.destroy(err));
      sink = gz;
    }
    // A write error reaches the caller through write() and commit(); an 'error' event with no
    // listener would instead end the whole process (a full disk is a shard failure, not a crash).
    writer.stream.on('error', () => undefined);
    sink.on('error', () => undefined);
    const shardWriter = new ShardWriter(storage, shard, names, writer, sink);
    if (format !== 'jsonl') {
      const dataset = await openDatasetWriter(storage, output, shard.id, format).catch(
        async (err: unknown) => {
          await shardWriter.abort();
          throw new ShardError(shard.id, `cannot write its ${format} file: ${errorMessage(err)}`, {
            cause: err,
          });
        },
      );
      shardWriter.#dataset = { format, writer: dataset };
    }
    return shardWriter;
  }

  /**
   * Writes records (in shard order); the kept ones also go into the dataset file, with their
   * original image bytes (`images[i]` for `records[i]`) when the format carries images.
   */
  async append(
    records: readonly OutputRecord[],
    images?: readonly (Uint8Array | undefined)[],
  ): Promise<void> {
    if (records.length === 0) return;
    let chunk = '';
    for (const r of records) {
      chunk += `${JSON.stringify(r)}\n`;
      this.stats.add(r);
    }
    await writeChunk(this.#sink, chunk);
    const dataset = this.#dataset?.writer;
    if (dataset) for (const [i, r] of records.entries()) if (inDataset(r)) await dataset.add(r, images?.[i]);
  }

  /**
   * Makes the data file visible, then writes the marker (with the fingerprint of the input the
   * records were made from); returns the marker's contents.
   */
  async commit(
    timings: StageTimings,
    startedAt: Date,
    fallbackOptions: RecordOptions,
    fingerprint?: string,
  ): Promise<ShardStats> {
    const t0 = performance.now();
    try {
      if (this.#sink !== this.#writer.stream) {
        this.#sink.end();
        await finished(this.#sink);
      }
      // The dataset file first: records visible without it would not be a complete shard either.
      const dataset = this.#dataset && {
        format: this.#dataset.format,
        file: baseName(this.#dataset.writer.uri),
        samples: await this.#dataset.writer.commit(),
      };
      await this.#writer.commit();
      this.#closed = true;
      timings.write += performance.now() - t0;
      const stats = this.stats.finish(
        this.#shard,
        timings,
        startedAt,
        new Date(),
        fallbackOptions,
        fingerprint,
      );
      if (dataset) stats.dataset = dataset;
      await this.#storage.write(this.names.stats, `${JSON.stringify(stats, null, 2)}\n`);
      return stats;
    } catch (err) {
      await this.abort();
      throw new ShardError(this.#shard.id, `cannot write ${this.names.data}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async abort(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#sink.destroy();
    await this.#dataset?.writer.abort().catch(() => undefined);
    await this.#writer.abort();
  }
}
