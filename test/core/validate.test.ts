import { describe, expect, it } from 'vitest';
import { DEFAULT_RUN_OPTIONS } from '../../src/core/defaults.js';
import { UsageError } from '../../src/core/errors.js';
import { runOptions } from '../../src/core/options.js';
import { validateId, validateRunOptions } from '../../src/core/validate.js';

function message(o: Parameters<typeof runOptions>[0]): string {
  try {
    validateRunOptions(runOptions(o));
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  return 'valid';
}

describe('validateRunOptions', () => {
  it('accepts the defaults', () => {
    expect(validateRunOptions(DEFAULT_RUN_OPTIONS)).toBe(DEFAULT_RUN_OPTIONS);
    expect(message({ decoding: { numCaptions: 0 } })).toBe('valid');
  });

  it('names the flag of every value out of range', () => {
    expect(message({ decoding: { topP: 2 } })).toBe('--top-p must be in (0, 1]');
    expect(message({ decoding: { topP: 0 } })).toBe('--top-p must be in (0, 1]');
    expect(message({ decoding: { topK: -1 } })).toBe('--top-k must be an integer >= 0');
    expect(message({ decoding: { temperature: 0 } })).toBe('--temperature must be positive');
    expect(message({ decoding: { maxLength: 0 } })).toBe('--max-length must be in [1, 512]');
    expect(message({ decoding: { strategy: 'beam', numBeams: 1 } })).toMatch(/--num-beams >= 2/);
    expect(message({ decoding: { strategy: 'top' as 'beam' } })).toBe(
      '--strategy must be one of nucleus, greedy, beam',
    );
    expect(message({ filter: { threshold: 1.5 } })).toBe('--threshold must be in [0, 1]');
    expect(message({ filter: { keepTop: 1.5 } })).toBe('--keep-top must be an integer >= 0');
    expect(message({ filter: { maxTextLength: 1 } })).toBe('--max-text-length must be in [2, 512] tokens');
    expect(message({ input: { shardSize: 0 } })).toBe('--shard-size must be an integer in [1, 1000000]');
    expect(message({ limits: { fetchRetries: -1 } })).toBe('--fetch-retries must be an integer in [0, 10]');
    expect(message({ limits: { concurrency: 0 } })).toBe(
      '--fetch-concurrency must be an integer in [1, 256]',
    );
    expect(message({ batchSize: 0 })).toBe('--batch-size must be an integer in [1, 4096]');
  });

  it('bounds every option that multiplies work or memory (a queued run may carry any value)', () => {
    expect(message({ decoding: { numCaptions: 50_000 } })).toBe(
      '--num-captions must be an integer in [0, 64] (0: score the web text only)',
    );
    expect(message({ decoding: { numBeams: 1000 } })).toBe('--num-beams must be an integer in [1, 64]');
    expect(message({ decoding: { maxLength: 100_000 } })).toBe('--max-length must be in [1, 512]');
    expect(message({ decoding: { prompt: 'x'.repeat(1001) } })).toBe(
      '--prompt must be a string of at most 1000 characters',
    );
    expect(message({ batchSize: 1e6 })).toBe('--batch-size must be an integer in [1, 4096]');
    expect(message({ input: { shardSize: 1e9 } })).toBe('--shard-size must be an integer in [1, 1000000]');
    expect(message({ limits: { maxBytes: 2 ** 40 } })).toBe(
      '--max-bytes must be an integer in [1, 1073741824]',
    );
    expect(message({ limits: { concurrency: 10_000 } })).toBe(
      '--fetch-concurrency must be an integer in [1, 256]',
    );
    expect(message({ input: { imageColumn: 'c'.repeat(300) } })).toBe(
      '--image-column must be 1 to 256 characters',
    );
  });

  it('checks the source policy: absolute roots, bucket names, bounded lists', () => {
    expect(message({ sources: { localRoots: ['/data/images'], s3Buckets: ['my-bucket'] } })).toBe('valid');
    expect(message({ sources: { localRoots: ['relative/dir'] } })).toBe(
      '--allow-root takes at most 64 absolute folders',
    );
    expect(message({ sources: { s3Buckets: ['a/b'] } })).toBe('--allow-bucket takes at most 64 bucket names');
    expect(message({ sources: { s3Buckets: Array(65).fill('bucket') } })).toBe(
      '--allow-bucket takes at most 64 bucket names',
    );
  });

  it('refuses a value that is not run options at all (a job payload is parsed JSON)', () => {
    for (const bad of ['a string', null, [], { decoding: {} }]) {
      expect(() => validateRunOptions(bad as never)).toThrow(
        'run options must be an object with decoding, filter, input, limits, output, sources objects',
      );
    }
  });

  it('takes shard and run ids that cannot form a path', () => {
    for (const ok of ['captions-0-8', 'human-a.b_c', '00000', 'run-20240101T000000Z-abc123'])
      expect(validateId(ok, 'shard id')).toBe(ok);
    for (const bad of ['../../../../../../tmp/x', '..', '.hidden', 'a/b', 'a\\b', '', 'x'.repeat(201), 7]) {
      expect(() => validateId(bad, 'shard id')).toThrow(UsageError);
    }
  });

  it('lists every problem of one value at once', () => {
    expect(message({ decoding: { topP: 2, topK: -1 } })).toBe(
      '--top-p must be in (0, 1]; --top-k must be an integer >= 0',
    );
  });
});
