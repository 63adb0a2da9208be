/**
 * Every default capfilt applies, in one place. The CLI's flag defaults, the library functions'
 * fallbacks and the README's option table all come from here (test/core/defaults.test.ts checks
 * the README against this module), so a default is never written twice.
 */
import type {
  DecodingOptions,
  FetchLimits,
  FilterOptions,
  InputOptions,
  OutputOptions,
  RunOptions,
  SourcePolicy,
  WorkerLimits,
} from './types.js';

/**
 * How captions are decoded: BLIP CapFilt's `generate(sample=True)` (salesforce/BLIP).
 * - strategy: @defaultValue 'nucleus'
 * - topP: @defaultValue 0.9 (nucleus probability mass)
 * - topK: @defaultValue 50 (the top-k cut Hugging Face applies before top-p unless told otherwise)
 * - repetitionPenalty: @defaultValue 1.1 for nucleus; greedy and beam use 1.0, as BLIP hard-codes
 *   per branch (see {@link repetitionPenaltyFor})
 * - numBeams: @defaultValue 3 (beam search only; length penalty 1.0)
 * - maxLength / minLength: @defaultValue 30 / 10, whole decoder sequence ([DEC] and prompt included)
 * - prompt: @defaultValue 'a picture of '
 * - numCaptions: @defaultValue 1 synthetic caption per image
 * - seed: @defaultValue 0
 * - temperature: @defaultValue 1
 */
export const CAPFILT_DECODING: DecodingOptions = {
  strategy: 'nucleus',
  topP: 0.9,
  topK: 50,
  repetitionPenalty: 1.1,
  numBeams: 3,
  maxLength: 30,
  minLength: 10,
  prompt: 'a picture of ',
  numCaptions: 1,
  seed: 0,
  temperature: 1,
};

/** BLIP's repetition penalty for a strategy: 1.1 when sampling, 1.0 for greedy and beam search. */
export function repetitionPenaltyFor(strategy: DecodingOptions['strategy']): number {
  return strategy === 'nucleus' ? CAPFILT_DECODING.repetitionPenalty : 1;
}

/**
 * How texts are scored and kept: BLIP's filter.
 * - threshold: @defaultValue 0.5 (kept iff ITM match probability is strictly above)
 * - consider: @defaultValue 'both'
 * - keepTop: @defaultValue 0 (no limit on kept texts per image)
 * - firstToken: @defaultValue 'enc' ([ENC] first, as BLIP was fine-tuned)
 * - normalizeWebText: @defaultValue true (BLIP's pre_caption before scoring)
 * - maxTextLength: @defaultValue 35 tokens
 */
export const CAPFILT_FILTER: FilterOptions = {
  threshold: 0.5,
  consider: 'both',
  keepTop: 0,
  firstToken: 'enc',
  normalizeWebText: true,
  maxTextLength: 35,
};

/**
 * - imageColumn / textColumn: @defaultValue unset: the first of {@link RECOGNISED_COLUMNS} a file has
 * - shardSize: @defaultValue 10000 pairs per shard of a manifest or image folder
 */
export const DEFAULT_INPUT: InputOptions = { shardSize: 10_000 };

/**
 * The column names a manifest is read by when no flag names one, matched case-insensitively, in
 * order of preference: what img2dataset, LAION (`URL`, `TEXT`, `SAMPLE_ID`), DataComp (`uid`,
 * `url`, `text`), Hugging Face datasets (`image`, `text`) and BLIP/LAVIS annotations (`image`,
 * `caption`) call them. `key` is never an image reference: it names the sample.
 */
export const RECOGNISED_COLUMNS = {
  image: [
    'image',
    'url',
    'image_url',
    'img_url',
    'path',
    'image_path',
    'file_name',
    'filepath',
    'jpg',
    'png',
    'webp',
  ],
  text: ['caption', 'text', 'txt', 'alt_text', 'alt'],
  key: ['key', 'uid', 'sample_id', 'id'],
} as const;

/**
 * What an image may cost to fetch and decode.
 * - maxBytes: @defaultValue 64 MiB
 * - maxPixels: @defaultValue 100 megapixels (decompression bombs)
 * - decodeTimeoutMs: @defaultValue 30000
 * - fetchTimeoutMs: @defaultValue 20000 per http(s) attempt
 * - fetchRetries: @defaultValue 2 extra attempts on network errors, 429 and 5xx
 * - allowPrivateNetwork: @defaultValue false
 * - concurrency: @defaultValue 16 images fetched and decoded at once
 */
export const DEFAULT_LIMITS: FetchLimits = {
  maxBytes: 64 << 20,
  maxPixels: 100_000_000,
  decodeTimeoutMs: 30_000,
  fetchTimeoutMs: 20_000,
  fetchRetries: 2,
  allowPrivateNetwork: false,
  concurrency: 16,
};

/**
 * Decoded pixels one process holds at once, over all images in flight (io/pixel-budget.ts): the
 * default per-image cap's worth, about 300 MB of RGB. Typical web images (well under a megapixel)
 * never wait on it; only large ones are decoded fewer at a time.
 * @defaultValue 100 megapixels
 */
export const DEFAULT_PIXEL_BUDGET = 100_000_000;

/** compression: @defaultValue 'none'; format: @defaultValue 'jsonl' (records only, no dataset file) */
export const DEFAULT_OUTPUT: OutputOptions = { compression: 'none', format: 'jsonl' };

/**
 * What image references may read beyond the run's own inputs (whose folder or bucket is added at
 * entry): nothing. `--allow-root` and `--allow-bucket` widen it.
 */
export const DEFAULT_SOURCES: SourcePolicy = { localRoots: [], s3Buckets: [] };

/**
 * What a worker may touch for the runs it serves: unlimited, as before these limits existed (the
 * right roots depend on the deployment; the worker warns at start while a limit is unset).
 */
export const DEFAULT_WORKER_LIMITS: WorkerLimits = {};

/**
 * Decoder rows (images × captions or beams) and ITM images per model call; the same for `run`,
 * `produce` and `schedule` (a worker may override it for its own calls).
 * @defaultValue 16
 */
export const DEFAULT_BATCH_SIZE = 16;

/** Every option of a run at its default: the paper's CapFilt setting. */
export const DEFAULT_RUN_OPTIONS: RunOptions = {
  decoding: CAPFILT_DECODING,
  filter: CAPFILT_FILTER,
  input: DEFAULT_INPUT,
  limits: DEFAULT_LIMITS,
  output: DEFAULT_OUTPUT,
  sources: DEFAULT_SOURCES,
  batchSize: DEFAULT_BATCH_SIZE,
};

/**
 * Decoding steps of the WebGPU whole-graph captioner written by `capfilt models import`
 * (`--webgpu-steps`): WebGPU has no Loop kernel, so the steps are inlined and all run. CAPFILT's
 * max length − 1 covers the default decoding whatever the prompt; longer decodes on WebGPU go
 * step by step from the host.
 * @defaultValue 29
 */
export const DEFAULT_WEBGPU_STEPS = CAPFILT_DECODING.maxLength - 1;

/**
 * Where and how the models run.
 * - device: @defaultValue 'cpu'
 * - visionBatchSize: @defaultValue 2 images per vision-encoder call (CPUs prefer small ones)
 * - intraOpThreads: @defaultValue 0 (onnxruntime picks one per core)
 * - wholeGraph: one graph call per batch (captions or scores computed on the device) or the
 *   vision, cross K/V and decoder or ITM/ITC graphs called one by one from the host (beam search
 *   always is). @defaultValue the captioner everywhere; the filter on GPUs only: on a CPU nothing
 *   crosses a bus, and the host path groups texts of similar length into calls (less padding)
 */
export const DEFAULT_ENGINE = {
  device: 'cpu',
  visionBatchSize: 2,
  intraOpThreads: 0,
  wholeGraph: {
    captioner: { cpu: true, cuda: true, webgpu: true },
    filter: { cpu: false, cuda: true, webgpu: true },
  },
} as const;

/**
 * The distributed service.
 * - redisUrl: @defaultValue 'redis://127.0.0.1:6379' (after `--redis` and `REDIS_URL`)
 * - prefix: @defaultValue 'capfilt' (after `--prefix` and `CAPFILT_PREFIX`)
 * - mode: @defaultValue 'split'
 * - workerConcurrency: @defaultValue 1 shard job in flight per stage and worker process
 * - lockDurationMs: @defaultValue 120000 (twice the longest model call it survives)
 * - shutdownGraceMs: @defaultValue 60000
 * - inlineResultBytes: @defaultValue 1 MiB of JSON (`CAPFILT_INLINE_RESULT_BYTES`); larger stage
 *   results are spilled to files
 * - attempts / backoffMs: @defaultValue 5 / 5000 (exponential, 20 % jitter)
 */
export const DEFAULT_QUEUE = {
  redisUrl: 'redis://127.0.0.1:6379',
  prefix: 'capfilt',
  mode: 'split',
  workerConcurrency: 1,
  lockDurationMs: 120_000,
  shutdownGraceMs: 60_000,
  inlineResultBytes: 1 << 20,
  attempts: 5,
  backoffMs: 5_000,
} as const;

/** host: @defaultValue '127.0.0.1' (anything else requires auth); port: @defaultValue 3077 */
export const DEFAULT_DASHBOARD = { host: '127.0.0.1', port: 3077 } as const;
