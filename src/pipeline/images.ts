/**
 * The original image bytes of a shard's records for its WebDataset tar: the bytes a batch was
 * decoded from when this process read them (`keep`), otherwise — records that crossed a job
 * boundary or came back from a checkpoint, `capfilt export` — read again from the shard's input
 * through the same reader, in its order.
 */
import { ShardError } from '../core/errors.js';
import type { LoadedSample, OutputRecord, PairRef, ShardRef } from '../core/types.js';
import { inDataset } from '../output/dataset-writer.js';
import { imageBytes, readShardPairs, type StageContext } from './stages.js';

export class ShardImages {
  #shard: ShardRef;
  #ctx: Pick<StageContext, 'storage' | 'options'>;
  #pairs: AsyncGenerator<PairRef>;
  /** Bytes of decoded pairs not yet written, by pair index. */
  #kept = new Map<number, Uint8Array>();

  constructor(shard: ShardRef, ctx: Pick<StageContext, 'storage' | 'options'>) {
    this.#shard = shard;
    this.#ctx = ctx;
    this.#pairs = readShardPairs(shard, ctx);
  }

  /** The pair a record was made from: records come in shard order, so the reader only moves on. */
  async #pairOf(r: OutputRecord): Promise<PairRef> {
    for (;;) {
      const next = await this.#pairs.next();
      if (next.done || next.value.index > r.index) break;
      if (next.value.index < r.index) continue;
      if (next.value.key === r.key) return next.value;
      break;
    }
    throw new ShardError(this.#shard.id, `${r.key}: the input changed since the record was written`, {
      retryable: false,
    });
  }

  /** Keeps the bytes a batch was decoded from, until its records are written. */
  keep(batch: readonly LoadedSample[]): void {
    for (const s of batch) if (s.bytes) this.#kept.set(s.ref.index, s.bytes);
  }

  /** Per record, its image bytes when it belongs in the dataset (undefined otherwise). */
  async of(records: readonly OutputRecord[]): Promise<(Uint8Array | undefined)[]> {
    const out: (Uint8Array | undefined)[] = [];
    for (const r of records) {
      const kept = this.#kept.get(r.index);
      this.#kept.delete(r.index);
      if (!inDataset(r)) out.push(undefined);
      else out.push(kept ?? (await imageBytes(await this.#pairOf(r), this.#ctx)));
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#pairs.return(undefined);
  }
}
