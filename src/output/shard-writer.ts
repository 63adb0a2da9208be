import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { ShardError } from '../core/errors.js';
import type { OutputRecord, RecordOptions, ShardRef, ShardStats, StageTimings } from '../core/types.js';
import type { AtomicWriter, Storage } from '../io/storage/storage.js';
import { type Compression, type ShardOutputNames, shardOutputNames } from './layout.js';
import { StatsAccumulator } from './stats.js';

/** Resolves once the chunk is written, or after 'drain' when the stream's buffer is full. */
function write(stream: Writable, chunk: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = stream.write(chunk, (err) => {
      if (err) reject(err);
      else if (ok) resolve();
    });
    // once() rejects if the stream errors while the write waits for room.
    if (!ok) once(stream, 'drain').then(() => resolve(), reject);
  });
}

/**
 * Streams one shard's records to `part-<shard>.jsonl[.gz]` through an atomic writer, then writes
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
  ): Promise<ShardWriter> {
    const names = shardOutputNames(output, shard.id, compression);
    let writer: AtomicWriter;
    try {
      // A stale marker from an earlier run must not vouch for the data being rewritten now.
      await storage.delete(names.stats).catch(() => undefined);
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
    return new ShardWriter(storage, shard, names, writer, sink);
  }

  async append(records: readonly OutputRecord[]): Promise<void> {
    if (records.length === 0) return;
    let chunk = '';
    for (const r of records) {
      chunk += `${JSON.stringify(r)}\n`;
      this.stats.add(r);
    }
    await write(this.#sink, chunk);
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
    await this.#writer.abort();
  }
}
