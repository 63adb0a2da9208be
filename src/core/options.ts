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
  };
}

/** The fields of `o` that are set: spreading it over defaults keeps the defaults of the unset ones. */
export function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
