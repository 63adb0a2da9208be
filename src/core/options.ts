import { DEFAULT_RUN_OPTIONS } from './defaults.js';
import type { RecordOptions, RunOptions } from './types.js';

/** A full RunOptions from partial overrides (one level deep), defaults being the paper's. */
export function runOptions(
  overrides: {
    decoding?: Partial<RunOptions['decoding']>;
    filter?: Partial<RunOptions['filter']>;
    input?: Partial<RunOptions['input']>;
    limits?: Partial<RunOptions['limits']>;
    output?: Partial<RunOptions['output']>;
    sources?: Partial<RunOptions['sources']>;
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
    sources: { ...d.sources, ...overrides.sources },
    batchSize: overrides.batchSize ?? d.batchSize,
  };
}

/** The provenance written into every record: what decided its texts. */
export function recordOptions(o: RunOptions): RecordOptions {
  return {
    threshold: o.filter.threshold,
    consider: o.filter.consider,
    top_k_texts: o.filter.keepTop,
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
    image_column: o.input.imageColumn ?? null,
    text_column: o.input.textColumn ?? null,
  };
}

/** One option's value as an output's run record keeps it, for comparing two runs. */
export type DecidingValue = string | number | boolean;

/**
 * The options that decide an output's records, each under the flag that sets it: a rerun into an
 * output must match them, or its records would mix two settings. Batch sizes, timeouts and
 * concurrency change how fast records come, not what they say, so they may differ.
 */
export function decidingOptions(o: RunOptions): Record<string, DecidingValue> {
  const d = o.decoding;
  const f = o.filter;
  return {
    '--strategy': d.strategy,
    '--top-p': d.topP,
    '--top-k': d.topK,
    '--repetition-penalty': d.repetitionPenalty,
    '--num-beams': d.numBeams,
    '--max-length': d.maxLength,
    '--min-length': d.minLength,
    '--prompt': d.prompt,
    '--num-captions': d.numCaptions,
    '--seed': d.seed,
    '--temperature': d.temperature,
    '--threshold': f.threshold,
    '--consider': f.consider,
    '--keep-top': f.keepTop,
    '--first-token': f.firstToken,
    '--no-normalize': !f.normalizeWebText,
    '--max-text-length': f.maxTextLength,
    // Unset: the recognised column names, read the same way each time.
    '--image-column': o.input.imageColumn ?? 'auto',
    '--text-column': o.input.textColumn ?? 'auto',
    '--shard-size': o.input.shardSize,
    '--max-bytes': o.limits.maxBytes,
    '--max-pixels': o.limits.maxPixels,
    '--allow-private-network': o.limits.allowPrivateNetwork,
    '--gzip': o.output.compression === 'gzip',
  };
}

/** The deciding options `capfilt refilter` can change from stored scores, without a model. */
export const REFILTER_FLAGS: readonly string[] = ['--threshold', '--consider', '--keep-top'];

/** The fields of `o` that are set: spreading it over defaults keeps the defaults of the unset ones. */
export function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
