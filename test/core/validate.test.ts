import { describe, expect, it } from 'vitest';
import { DEFAULT_RUN_OPTIONS } from '../../src/core/defaults.js';
import { UsageError } from '../../src/core/errors.js';
import { runOptions } from '../../src/core/options.js';
import { validateRunOptions } from '../../src/core/validate.js';

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
    expect(message({ decoding: { maxLength: 0 } })).toBe('--max-length must be at least 1');
    expect(message({ decoding: { strategy: 'beam', numBeams: 1 } })).toMatch(/--num-beams >= 2/);
    expect(message({ decoding: { strategy: 'top' as 'beam' } })).toBe(
      '--strategy must be one of nucleus, greedy, beam',
    );
    expect(message({ filter: { threshold: 1.5 } })).toBe('--threshold must be in [0, 1]');
    expect(message({ filter: { keepTop: 1.5 } })).toBe('--keep-top must be an integer >= 0');
    expect(message({ filter: { maxTextLength: 1 } })).toBe('--max-text-length must be at least 2 tokens');
    expect(message({ input: { shardSize: 0 } })).toBe('--shard-size must be a positive integer');
    expect(message({ limits: { fetchRetries: -1 } })).toBe('--fetch-retries must be an integer >= 0');
    expect(message({ limits: { concurrency: 0 } })).toBe('--fetch-concurrency must be a positive integer');
    expect(message({ batchSize: 0 })).toBe('--batch-size must be at least 1');
  });

  it('lists every problem of one value at once', () => {
    expect(message({ decoding: { topP: 2, topK: -1 } })).toBe(
      '--top-p must be in (0, 1]; --top-k must be an integer >= 0',
    );
  });
});
