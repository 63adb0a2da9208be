/**
 * The original image bytes of records that were written without them (the queue's write job,
 * `capfilt export`): read again from the shard's input through the same reader, in its order.
 */
import { ShardError } from '../core/errors.js';
import type { OutputRecord, PairRef, ShardRef } from '../core/types.js';
import { inDataset } from '../output/dataset-writer.js';
import { imageBytes, readShardPairs, type StageContext } from './stages.js';

export class ShardImages {
  #shard: ShardRef;
  #ctx: Pick<StageContext, 'storage' | 'options'>;
  #pairs: AsyncGenerator<PairRef>;

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

  /** Per record, its image bytes when it belongs in the dataset (undefined otherwise). */
  async of(records: readonly OutputRecord[]): Promise<(Uint8Array | undefined)[]> {
    const out: (Uint8Array | undefined)[] = [];
    for (const r of records)
      out.push(inDataset(r) ? await imageBytes(await this.#pairOf(r), this.#ctx) : undefined);
    return out;
  }

  async close(): Promise<void> {
    await this.#pairs.return(undefined);
  }
}
