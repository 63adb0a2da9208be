/**
 * The ranges and choices of every run option, checked once where options enter capfilt (the
 * CLI's run, produce, schedule, caption and score; runLocal, produceRun and addSchedule for
 * library callers), so that a bad value fails at once, before any work is queued. Messages name
 * the command-line flag, and are the same whichever command was given the value.
 */
import { CAPFILT_FILTER } from './defaults.js';
import { UsageError } from './errors.js';
import { definedOnly } from './options.js';
import type { DecodingOptions, FetchLimits, FilterOptions, InputOptions, RunOptions } from './types.js';

type Check = [ok: boolean, message: string];

function enforce(checks: Check[]): void {
  const failed = checks.filter(([ok]) => !ok).map(([, message]) => message);
  if (failed.length > 0) throw new UsageError(failed.join('; '));
}

const isInt = (v: unknown, min: number): boolean => Number.isSafeInteger(v) && (v as number) >= min;
const oneOf = (v: unknown, choices: readonly string[]): boolean => choices.includes(v as string);
const text = (flag: string, choices: readonly string[]) => `${flag} must be one of ${choices.join(', ')}`;

export const STRATEGIES = ['nucleus', 'greedy', 'beam'] as const;
export const CONSIDER = ['web', 'synthetic', 'both'] as const;
export const FIRST_TOKENS = ['enc', 'cls'] as const;
export const COMPRESSIONS = ['none', 'gzip'] as const;

export function validateDecoding(o: DecodingOptions): void {
  enforce([
    [oneOf(o.strategy, STRATEGIES), text('--strategy', STRATEGIES)],
    [Number.isFinite(o.topP) && o.topP > 0 && o.topP <= 1, '--top-p must be in (0, 1]'],
    [isInt(o.topK, 0), '--top-k must be an integer >= 0'],
    [
      Number.isFinite(o.repetitionPenalty) && o.repetitionPenalty > 0,
      '--repetition-penalty must be positive',
    ],
    [isInt(o.numBeams, 1), '--num-beams must be an integer >= 1'],
    [isInt(o.maxLength, 1), '--max-length must be at least 1'],
    [isInt(o.minLength, 0), '--min-length must be an integer >= 0'],
    [typeof o.prompt === 'string', '--prompt must be a string'],
    [isInt(o.numCaptions, 0), '--num-captions must be an integer >= 0 (0: score the web text only)'],
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
    [isInt(o.maxTextLength, 2), '--max-text-length must be at least 2 tokens'],
  ]);
}

export function validateInput(o: InputOptions): void {
  enforce([
    [
      o.imageColumn === undefined || (typeof o.imageColumn === 'string' && o.imageColumn !== ''),
      '--image-column must not be empty',
    ],
    [
      o.textColumn === undefined || (typeof o.textColumn === 'string' && o.textColumn !== ''),
      '--text-column must not be empty',
    ],
    [isInt(o.shardSize, 1), '--shard-size must be a positive integer'],
  ]);
}

export function validateLimits(o: FetchLimits): void {
  enforce([
    [isInt(o.maxBytes, 1), '--max-bytes must be a positive integer'],
    [isInt(o.maxPixels, 1), '--max-pixels must be a positive integer'],
    [isInt(o.decodeTimeoutMs, 0), '--decode-timeout must be an integer >= 0 (0: none)'],
    [isInt(o.fetchTimeoutMs, 1), '--fetch-timeout must be a positive integer'],
    [isInt(o.fetchRetries, 0), '--fetch-retries must be an integer >= 0'],
    [typeof o.allowPrivateNetwork === 'boolean', 'allowPrivateNetwork must be true or false'],
    [isInt(o.concurrency, 1), '--fetch-concurrency must be a positive integer'],
  ]);
}

/** Checks every option of a run; returns it unchanged, or throws one UsageError listing what is wrong. */
export function validateRunOptions(o: RunOptions): RunOptions {
  validateDecoding(o.decoding);
  validateFilter(o.filter);
  validateInput(o.input);
  validateLimits(o.limits);
  enforce([
    [oneOf(o.output.compression, COMPRESSIONS), text('compression', COMPRESSIONS)],
    [isInt(o.batchSize, 1), '--batch-size must be at least 1'],
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
    [/^(cpu|auto|cuda(:\d+)?)$/.test(o.device), '--device must be cpu, cuda, cuda:N or auto'],
    [o.batchSize === undefined || isInt(o.batchSize, 1), '--batch-size must be at least 1'],
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
