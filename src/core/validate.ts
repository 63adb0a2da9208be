/**
 * The ranges and choices of every run option, checked once where options enter capfilt (the
 * CLI's run, produce, schedule, caption and score; runLocal, produceRun and addSchedule for
 * library callers), so that a bad value fails at once, before any work is queued. Messages name
 * the command-line flag, and are the same whichever command was given the value.
 */
import { isAbsolute } from 'node:path';
import { CAPFILT_FILTER } from './defaults.js';
import { UsageError } from './errors.js';
import { definedOnly } from './options.js';
import type {
  DecodingOptions,
  FetchLimits,
  FilterOptions,
  InputOptions,
  RunOptions,
  SourcePolicy,
  WorkerLimits,
} from './types.js';

type Check = [ok: boolean, message: string];

function enforce(checks: Check[]): void {
  const failed = checks.filter(([ok]) => !ok).map(([, message]) => message);
  if (failed.length > 0) throw new UsageError(failed.join('; '));
}

/**
 * Ceilings of the options that multiply work or memory. A queued run's options come from Redis,
 * where anyone who can write may put any value, so each has a bound well above real use (BLIP
 * itself uses one caption per image, 35 text tokens and sequences of at most 512 positions).
 */
export const OPTION_BOUNDS = {
  numCaptions: 64,
  numBeams: 64,
  /** BERT's position embeddings: 512. */
  sequenceLength: 512,
  promptChars: 1_000,
  columnChars: 256,
  shardSize: 1_000_000,
  batchSize: 4_096,
  maxBytes: 1 << 30,
  maxPixels: 1_000_000_000,
  timeoutMs: 3_600_000,
  fetchRetries: 10,
  concurrency: 256,
  /** Roots and buckets a source policy may list. */
  sources: 64,
} as const;

const B = OPTION_BOUNDS;

const isInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): boolean =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
const oneOf = (v: unknown, choices: readonly string[]): boolean => choices.includes(v as string);
const text = (flag: string, choices: readonly string[]) => `${flag} must be one of ${choices.join(', ')}`;

export const STRATEGIES = ['nucleus', 'greedy', 'beam'] as const;
export const CONSIDER = ['web', 'synthetic', 'both'] as const;
export const FIRST_TOKENS = ['enc', 'cls'] as const;
export const COMPRESSIONS = ['none', 'gzip'] as const;
export const DATASET_FORMATS = ['jsonl', 'webdataset', 'parquet'] as const;

export function validateDecoding(o: DecodingOptions): void {
  enforce([
    [oneOf(o.strategy, STRATEGIES), text('--strategy', STRATEGIES)],
    [Number.isFinite(o.topP) && o.topP > 0 && o.topP <= 1, '--top-p must be in (0, 1]'],
    [isInt(o.topK, 0), '--top-k must be an integer >= 0'],
    [
      Number.isFinite(o.repetitionPenalty) && o.repetitionPenalty > 0,
      '--repetition-penalty must be positive',
    ],
    [isInt(o.numBeams, 1, B.numBeams), `--num-beams must be an integer in [1, ${B.numBeams}]`],
    [isInt(o.maxLength, 1, B.sequenceLength), `--max-length must be in [1, ${B.sequenceLength}]`],
    [isInt(o.minLength, 0, B.sequenceLength), `--min-length must be in [0, ${B.sequenceLength}]`],
    [
      typeof o.prompt === 'string' && o.prompt.length <= B.promptChars,
      `--prompt must be a string of at most ${B.promptChars} characters`,
    ],
    [
      isInt(o.numCaptions, 0, B.numCaptions),
      `--num-captions must be an integer in [0, ${B.numCaptions}] (0: score the web text only)`,
    ],
    [Number.isSafeInteger(o.seed), '--seed must be an integer'],
    [Number.isFinite(o.temperature) && o.temperature > 0, '--temperature must be positive'],
  ]);
  if (o.strategy === 'beam' && (o.numBeams < 2 || o.numCaptions > o.numBeams)) {
    throw new UsageError('beam search needs --num-beams >= 2 and --num-captions <= --num-beams');
  }
}

export function validateFilter(o: FilterOptions): void {
  enforce([
    [Number.isFinite(o.threshold) && o.threshold >= 0 && o.threshold <= 1, '--threshold must be in [0, 1]'],
    [oneOf(o.consider, CONSIDER), text('--consider', CONSIDER)],
    [isInt(o.keepTop, 0), '--keep-top must be an integer >= 0'],
    [oneOf(o.firstToken, FIRST_TOKENS), text('--first-token', FIRST_TOKENS)],
    [typeof o.normalizeWebText === 'boolean', 'normalizeWebText must be true or false'],
    [
      isInt(o.maxTextLength, 2, B.sequenceLength),
      `--max-text-length must be in [2, ${B.sequenceLength}] tokens`,
    ],
  ]);
}

/** Unset: the reader recognises the usual column names. */
const column = (v: unknown): boolean =>
  v === undefined || (typeof v === 'string' && v !== '' && v.length <= B.columnChars);

export function validateInput(o: InputOptions): void {
  enforce([
    [column(o.imageColumn), `--image-column must be 1 to ${B.columnChars} characters`],
    [column(o.textColumn), `--text-column must be 1 to ${B.columnChars} characters`],
    [isInt(o.shardSize, 1, B.shardSize), `--shard-size must be an integer in [1, ${B.shardSize}]`],
  ]);
}

export function validateLimits(o: FetchLimits): void {
  const ms = B.timeoutMs;
  enforce([
    [isInt(o.maxBytes, 1, B.maxBytes), `--max-bytes must be an integer in [1, ${B.maxBytes}]`],
    [isInt(o.maxPixels, 1, B.maxPixels), `--max-pixels must be an integer in [1, ${B.maxPixels}]`],
    [isInt(o.decodeTimeoutMs, 0, ms), `--decode-timeout must be an integer in [0, ${ms}] (0: none)`],
    [isInt(o.fetchTimeoutMs, 1, ms), `--fetch-timeout must be an integer in [1, ${ms}]`],
    [
      isInt(o.fetchRetries, 0, B.fetchRetries),
      `--fetch-retries must be an integer in [0, ${B.fetchRetries}]`,
    ],
    [typeof o.allowPrivateNetwork === 'boolean', 'allowPrivateNetwork must be true or false'],
    [
      isInt(o.concurrency, 1, B.concurrency),
      `--fetch-concurrency must be an integer in [1, ${B.concurrency}]`,
    ],
  ]);
}

/** S3's bucket naming, loosened to what S3-compatible stores accept (upper case, underscores). */
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/;

const listOf = (v: unknown, ok: (item: unknown) => boolean): boolean =>
  Array.isArray(v) && v.length <= B.sources && v.every(ok);

export function validateSources(o: SourcePolicy): void {
  enforce([
    [
      listOf(o?.localRoots, (r) => typeof r === 'string' && isAbsolute(r) && r.length <= 4096),
      `--allow-root takes at most ${B.sources} absolute folders`,
    ],
    [
      listOf(o?.s3Buckets, (b) => typeof b === 'string' && BUCKET.test(b)),
      `--allow-bucket takes at most ${B.sources} bucket names`,
    ],
  ]);
}

/** A worker root: a local folder, `s3://bucket[/prefix]` or an http(s) prefix with a host. */
const isRoot = (v: unknown): boolean =>
  typeof v === 'string' &&
  v !== '' &&
  v.length <= 4096 &&
  (/^s3:\/\//i.test(v) ? BUCKET.test(v.slice(5).split('/')[0] ?? '') : !/^https?:\/\/(\/|$)/i.test(v));

/** The roots a worker serves runs within (`capfilt worker`, startWorkerPool). */
export function validateWorkerLimits(o: WorkerLimits): WorkerLimits {
  const roots = (v: unknown) => v === undefined || listOf(v, isRoot);
  const what = `at most ${B.sources} locations (folders, s3://bucket[/prefix], http(s):// prefixes)`;
  enforce([
    [roots(o?.readRoots), `--read-root takes ${what}`],
    [roots(o?.writeRoots), `--write-root takes ${what}`],
    [
      o?.privateNetwork === undefined || typeof o.privateNetwork === 'boolean',
      '--allow-private-network is a switch',
    ],
  ]);
  return o;
}

/**
 * Shard and run ids: they name output and spill files (`part-<shard>.jsonl`) and Redis keys, so
 * they are letters, digits, '.', '_' and '-' only, never start with a dot and are bounded: no id
 * can form a path, a hidden name or '..'. planShards only makes ids of this form.
 */
export const ID_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

/** `id` when it is a valid shard or run id; a UsageError naming `what` otherwise. */
export function validateId(id: unknown, what: string): string {
  if (typeof id === 'string' && ID_PATTERN.test(id)) return id;
  const shown = typeof id === 'string' ? JSON.stringify(id.slice(0, 80)) : typeof id;
  throw new UsageError(`${what} must match ${ID_PATTERN.source} (got ${shown})`);
}

/** Checks every option of a run; returns it unchanged, or throws one UsageError listing what is wrong. */
export function validateRunOptions(o: RunOptions): RunOptions {
  // A queued run's options are parsed JSON from Redis: the shape is checked before any field.
  const sections = ['decoding', 'filter', 'input', 'limits', 'output', 'sources'] as const;
  const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(o) || !sections.every((k) => isObject((o as unknown as Record<string, unknown>)[k]))) {
    throw new UsageError(`run options must be an object with ${sections.join(', ')} objects`);
  }
  validateDecoding(o.decoding);
  validateFilter(o.filter);
  validateInput(o.input);
  validateLimits(o.limits);
  validateSources(o.sources);
  enforce([
    [oneOf(o.output?.compression, COMPRESSIONS), text('compression', COMPRESSIONS)],
    [oneOf(o.output?.format, DATASET_FORMATS), text('--output-format', DATASET_FORMATS)],
    [isInt(o.batchSize, 1, B.batchSize), `--batch-size must be an integer in [1, ${B.batchSize}]`],
  ]);
  return o;
}

/** Where and how the models run, as the engine flags give it (run, caption, score, worker). */
export interface EngineChoice {
  device: string;
  /** Unset on a worker, which then keeps the run's own batch size. */
  batchSize?: number;
  visionBatchSize: number;
  intraOpThreads: number;
}

export function validateEngine(o: EngineChoice): EngineChoice {
  enforce([
    [/^(cpu|auto|webgpu|cuda(:\d+)?)$/.test(o.device), '--device must be cpu, cuda, cuda:N, webgpu or auto'],
    [
      o.batchSize === undefined || isInt(o.batchSize, 1, B.batchSize),
      `--batch-size must be an integer in [1, ${B.batchSize}]`,
    ],
    [isInt(o.visionBatchSize, 1), '--vision-batch-size must be a positive integer'],
    [isInt(o.intraOpThreads, 0), '--threads must be an integer >= 0 (0: one per core)'],
  ]);
  return o;
}

/** `capfilt refilter`: the decision values it changes (unset ones keep the output's own). */
export function validateDecisionChange(
  o: Partial<Pick<FilterOptions, 'threshold' | 'consider' | 'keepTop'>>,
): void {
  validateFilter({ ...CAPFILT_FILTER, ...definedOnly(o) });
}

/** A TCP port to listen on. */
export function validatePort(port: number, flag = '--port'): number {
  enforce([
    [Number.isInteger(port) && port >= 1 && port <= 65_535, `${flag} must be an integer from 1 to 65535`],
  ]);
  return port;
}
