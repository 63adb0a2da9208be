import type { DefaultJobOptions } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import { DEFAULT_QUEUE } from '../core/defaults.js';
import { isPermanent, ShardError } from '../core/errors.js';

/** Retry and retention policy of shard jobs. */
export interface ShardJobPolicy {
  /** Tries per stage job, the first one included. */
  attempts: number;
  /** First backoff delay (ms); it doubles on each retry. */
  backoffMs: number;
  /** Completed jobs kept for inspection (count, and seconds); older ones are trimmed. */
  keepCompleted: { count: number; age: number };
  /** Failed jobs kept (they list permanent failures), bounded as well. */
  keepFailed: { count: number; age: number };
}

export const DEFAULT_SHARD_JOB_POLICY: ShardJobPolicy = {
  attempts: DEFAULT_QUEUE.attempts,
  backoffMs: DEFAULT_QUEUE.backoffMs,
  // A 100k-shard run must not keep 100k job hashes per stage: keep the last 1000 for a day.
  keepCompleted: { count: 1_000, age: 24 * 3600 },
  keepFailed: { count: 10_000, age: 7 * 24 * 3600 },
};

export function shardJobOptions(policy: ShardJobPolicy = DEFAULT_SHARD_JOB_POLICY): DefaultJobOptions {
  return {
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoffMs, jitter: 0.2 },
    removeOnComplete: policy.keepCompleted,
    removeOnFail: policy.keepFailed,
  };
}

/** Lock settings of stage workers. */
export interface LockPolicy {
  /** How long a job's lock lives without renewal (ms). */
  lockDuration: number;
  /** How often the stalled-job checker runs (ms). */
  stalledInterval: number;
  /** Times a job may stall (its worker died) before it fails. */
  maxStalledCount: number;
}

/**
 * BullMQ renews a job's lock every lockDuration/2 from the event loop, and onnxruntime-node's
 * session.run blocks that loop for the whole model call (it runs synchronously, in a
 * setImmediate), so a renewal can be late by one call; the loop turns between calls (vision,
 * each decoder step, ITM). The default (twice 60 s) keeps the lock even if a whole batch blocked
 * the loop: a BLIP-base batch of 16 takes ~35 s on a 2-core CPU. A worker killed mid-shard loses
 * its lock after lockDuration and the stalled checker hands the shard to another worker.
 */
export function lockPolicy(longestBatchMs = DEFAULT_QUEUE.lockDurationMs / 2): LockPolicy {
  const lockDuration = Math.max(30_000, 2 * longestBatchMs);
  return { lockDuration, stalledInterval: Math.min(30_000, lockDuration), maxStalledCount: 3 };
}

/**
 * BullMQ retries anything thrown; a ShardError marked non-retryable (the input is gone), bad
 * options and an unusable model become an UnrecoverableError, so the job fails at once and is
 * listed among the failures.
 */
export function toJobError(err: unknown): Error {
  if ((err instanceof ShardError && !err.retryable) || isPermanent(err)) {
    const unrecoverable = new UnrecoverableError(err.message);
    unrecoverable.stack = err.stack;
    return unrecoverable;
  }
  return err instanceof Error ? err : new Error(String(err));
}
