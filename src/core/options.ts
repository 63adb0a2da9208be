import { CAPFILT_DECODING } from './decoding.js';
import { CAPFILT_FILTER } from './filtering.js';
import type { RecordOptions, RunOptions } from './types.js';

export const DEFAULT_RUN_OPTIONS: RunOptions = {
  decoding: CAPFILT_DECODING,
  filter: CAPFILT_FILTER,
  input: { imageColumn: 'image', textColumn: 'caption', shardSize: 10_000 },
  limits: {
    maxBytes: 64 << 20,
    maxPixels: 100_000_000,
    decodeTimeoutMs: 30_000,
    fetchTimeoutMs: 20_000,
    fetchRetries: 2,
    allowPrivateNetwork: false,
    concurrency: 16,
  },
  output: { compression: 'none' },
  batchSize: 16,
};

/** A full RunOptions from partial overrides (one level deep), defaults being the paper's. */
export function runOptions(
  overrides: {
    decoding?: Partial<RunOptions['decoding']>;
    filter?: Partial<RunOptions['filter']>;
    input?: Partial<RunOptions['input']>;
    limits?: Partial<RunOptions['limits']>;
    output?: Partial<RunOptions['output']>;
    batchSize?: number;
  } = {},
): RunOptions {
  const d = DEFAULT_RUN_OPTIONS;
  return {
    decoding: { ...d.decoding, ...overrides.decoding },
    filter: { ...d.filter, ...overrides.filter },
    input: { ...d.input, ...overrides.input },
    limits: { ...d.limits, ...overrides.limits },
    output: { ...d.output, ...overrides.output },
    batchSize: overrides.batchSize ?? d.batchSize,
  };
}

/** The provenance written into every record: what decided its texts. */
export function recordOptions(o: RunOptions): RecordOptions {
  return {
    threshold: o.filter.threshold,
    consider: o.filter.consider,
    top_k_texts: o.filter.topK,
    first_token: o.filter.firstToken,
    normalize_web_text: o.filter.normalizeWebText,
    strategy: o.decoding.strategy,
    top_p: o.decoding.topP,
    top_k: o.decoding.topK,
    repetition_penalty: o.decoding.repetitionPenalty,
    num_beams: o.decoding.numBeams,
    max_length: o.decoding.maxLength,
    min_length: o.decoding.minLength,
    prompt: o.decoding.prompt,
    num_captions: o.decoding.numCaptions,
    seed: o.decoding.seed,
  };
}
