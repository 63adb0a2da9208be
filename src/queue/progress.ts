import type { Job } from 'bullmq';
import { errorMessage } from '../core/errors.js';
import type { OutputRecord, ShardRef } from '../core/types.js';
import type { Stage } from './names.js';

/** A shard job's progress after each batch: what Bull Board's Progress tab and the run page show. */
export interface ShardJobProgress {
  runId: string;
  stage: Stage;
  shard: string;
  pairsDone: number;
  /** Null when the shard does not say how many pairs it holds (a whole tar, a folder). */
  pairsTotal: number | null;
  /** Pairs with at least one kept text; null for the caption stage (nothing is decided yet). */
  kept: number | null;
  pairsPerSecond: number;
}

/** Called by a stage function after each batch, with what the batch did. */
export type OnBatch = (batch: { pairs: number; kept: number | null }) => void;

/** Pairs of a batch with at least one kept text. */
export function keptPairs(records: readonly OutputRecord[]): number {
  return records.filter((r) => r.texts.length > 0).length;
}

/** The pairs a shard holds, when its reference says (row ranges). */
export function shardPairs(shard: ShardRef): number | null {
  return shard.rowStart !== undefined && shard.rowEnd !== undefined ? shard.rowEnd - shard.rowStart : null;
}

type ProgressJob = Pick<Job, 'updateProgress' | 'log'>;

/**
 * Reports a shard job's batches to its BullMQ job as they finish (in order, one write at a time,
 * never failing the job: progress is for people) and closes with one line per shard, in the job's
 * log and the worker's report (stdout of `capfilt worker`).
 */
export class ShardJobReporter {
  readonly #started = performance.now();
  #pending: Promise<unknown> = Promise.resolve();
  readonly #progress: ShardJobProgress;

  constructor(
    private readonly job: ProgressJob,
    private readonly out: { report: (line: string) => void; log: (line: string) => void },
    init: Pick<ShardJobProgress, 'runId' | 'stage' | 'shard' | 'pairsTotal'>,
  ) {
    this.#progress = { ...init, pairsDone: 0, kept: null, pairsPerSecond: 0 };
  }

  readonly onBatch: OnBatch = ({ pairs, kept }) => {
    const p = this.#progress;
    p.pairsDone += pairs;
    if (kept !== null) p.kept = (p.kept ?? 0) + kept;
    p.pairsPerSecond = p.pairsDone / Math.max((performance.now() - this.#started) / 1000, 1e-3);
    this.#report();
  };

  /**
   * The shard's line: `capfilt: <stage> <run>/<shard>: N pairs, K kept, R pairs/s`; `rate` when
   * the whole shard's rate is known better than this job's.
   */
  async finish(rate?: number): Promise<void> {
    const p = this.#progress;
    if (rate !== undefined) {
      p.pairsPerSecond = rate;
      this.#report();
    }
    const kept = p.kept === null ? '' : `, ${p.kept} kept`;
    const line = `capfilt: ${p.stage} ${p.runId}/${p.shard}: ${p.pairsDone} pairs${kept}, ${p.pairsPerSecond.toFixed(1)} pairs/s`;
    this.out.report(line);
    await this.#pending;
    await this.#quietly(() => this.job.log(line));
  }

  #report(): void {
    const snapshot = { ...this.#progress };
    this.#pending = this.#pending.then(() => this.#quietly(() => this.job.updateProgress(snapshot)));
  }

  async #quietly(write: () => Promise<unknown>): Promise<void> {
    try {
      await write();
    } catch (err) {
      this.out.log(`capfilt: could not report progress of ${this.#progress.shard}: ${errorMessage(err)}`);
    }
  }
}
