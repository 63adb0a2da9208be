import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { BadInputError, ModelError, NotFoundError, ShardError, UsageError } from '../../src/core/errors.js';
import { shardFailure } from '../../src/pipeline/shard.js';
import { toJobError } from '../../src/queue/job-options.js';

const shard = { id: 's', format: 'jsonl' as const, uri: '/x.jsonl' };

describe('which failures the queue retries', () => {
  it('never retries bad options, an unusable model, a missing input or a file that lies about itself', () => {
    for (const err of [
      new UsageError('--top-p must be in (0, 1]'),
      new ModelError('no manifest'),
      // A Parquet file claiming a 3 GB column once aborted every worker it was redelivered to.
      new BadInputError('/x.parquet', 'row group 0, column 0 declares bytes 4-3221225476'),
    ]) {
      expect(toJobError(err)).toBeInstanceOf(UnrecoverableError);
      expect(shardFailure(shard, err).retryable).toBe(false);
      expect(toJobError(shardFailure(shard, err))).toBeInstanceOf(UnrecoverableError);
    }
    expect(shardFailure(shard, new NotFoundError('/x.jsonl')).retryable).toBe(false);
  });

  it('retries anything else', () => {
    const err = new Error('ECONNRESET');
    expect(toJobError(err)).toBe(err);
    expect(shardFailure(shard, err).retryable).toBe(true);
    expect(toJobError(new ShardError('s', 'disk full'))).not.toBeInstanceOf(UnrecoverableError);
  });
});
