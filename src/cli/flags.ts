/**
 * The flags the commands share, declared once so that a setting has one flag name and one
 * meaning everywhere, and its default comes from core/defaults.ts. Old names are kept as hidden
 * aliases (accepted, not shown in --help) for scripts written against earlier releases.
 */
import { resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  CAPFILT_DECODING,
  CAPFILT_FILTER,
  DEFAULT_BATCH_SIZE,
  DEFAULT_ENGINE,
  DEFAULT_INPUT,
  DEFAULT_LIMITS,
  DEFAULT_OUTPUT,
  RECOGNISED_COLUMNS,
  repetitionPenaltyFor,
} from '../core/defaults.js';
import type {
  DatasetFormat,
  DecodingOptions,
  FilterOptions,
  RunOptions,
  SourcePolicy,
  WorkerLimits,
} from '../core/types.js';
import {
  CONSIDER,
  DATASET_FORMATS,
  FIRST_TOKENS,
  STRATEGIES,
  validateEngine,
  validateRunOptions,
  validateWorkerLimits,
} from '../core/validate.js';
import type { S3Options } from '../io/s3.js';
import type { EngineOptions } from '../model/runtime/engine.js';

export function intArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('not an integer');
  return n;
}

export function floatArg(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('not a number');
  return n;
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected an integer >= 0');
  return n;
}

/**
 * An old flag name, still accepted: hidden from --help, it sets the option named `canonical`
 * (its attribute name, e.g. 'threads') as if the new flag had been given.
 */
export function addAlias(
  cmd: Command,
  flags: string,
  canonical: string,
  parse: (value: string) => unknown = (v) => v,
): Command {
  const alias = new Option(flags).hideHelp();
  cmd.addOption(alias);
  cmd.on(`option:${alias.name()}`, (value: string) => {
    cmd.setOptionValueWithSource(canonical, parse(value), 'cli');
  });
  return cmd;
}

// ---- decoding --------------------------------------------------------------------------------

/** Commander's parsed decoding flags: the penalty stays unset unless given (it depends on the strategy). */
export type DecodingFlags = Omit<DecodingOptions, 'repetitionPenalty'> & { repetitionPenalty?: number };

export function addDecodingFlags(cmd: Command): Command {
  const d = CAPFILT_DECODING;
  return cmd
    .addOption(new Option('--strategy <name>', 'caption decoding').choices(STRATEGIES).default(d.strategy))
    .option('--top-p <p>', 'nucleus probability mass', floatArg, d.topP)
    .option('--top-k <k>', 'keep the k most likely tokens before top-p (0: off)', intArg, d.topK)
    .option(
      '--repetition-penalty <r>',
      `penalty on ids already generated (default ${repetitionPenaltyFor('nucleus')} for nucleus, ` +
        `${repetitionPenaltyFor('greedy')} for greedy and beam, as BLIP)`,
      floatArg,
    )
    .option('--num-beams <n>', 'beams for --strategy beam', intArg, d.numBeams)
    .option('--max-length <n>', 'longest decoder sequence, [DEC] and prompt included', intArg, d.maxLength)
    .option(
      '--min-length <n>',
      'shortest decoder sequence before [SEP] may end it, prompt included',
      intArg,
      d.minLength,
    )
    .option('--prompt <text>', 'caption prompt ("" for none)', d.prompt)
    .option('--num-captions <n>', 'synthetic captions per image', intArg, d.numCaptions)
    .option('--seed <n>', 'seed of the sampling streams', intArg, d.seed)
    .option('--temperature <t>', 'sampling temperature', floatArg, d.temperature);
}

export function decodingFromFlags(o: DecodingFlags): DecodingOptions {
  return {
    strategy: o.strategy,
    topP: o.topP,
    topK: o.topK,
    repetitionPenalty: o.repetitionPenalty ?? repetitionPenaltyFor(o.strategy),
    numBeams: o.numBeams,
    maxLength: o.maxLength,
    minLength: o.minLength,
    prompt: o.prompt,
    numCaptions: o.numCaptions,
    seed: o.seed,
    temperature: o.temperature,
  };
}

// ---- filter ----------------------------------------------------------------------------------

export interface FilterFlags {
  threshold?: number;
  consider?: FilterOptions['consider'];
  keepTop?: number;
  normalize?: boolean;
  firstToken: FilterOptions['firstToken'];
  maxTextLength: number;
}

/** The keep decision's flags (run, produce, schedule, score). */
export function addDecisionFlags(cmd: Command, withDefaults = true): Command {
  const f = CAPFILT_FILTER;
  const consider = new Option('--consider <which>', 'texts that may be kept').choices(CONSIDER);
  return cmd
    .option(
      '--threshold <p>',
      'keep a text iff its ITM match probability is above this',
      floatArg,
      withDefaults ? f.threshold : undefined,
    )
    .addOption(withDefaults ? consider.default(f.consider) : consider)
    .option(
      '--keep-top <k>',
      'keep at most k texts per image, best first (0: all)',
      intArg,
      withDefaults ? f.keepTop : undefined,
    );
}

export function addFilterFlags(cmd: Command): Command {
  const f = CAPFILT_FILTER;
  return addDecisionFlags(cmd)
    .option('--no-normalize', 'score web text as is, without BLIP pre_caption')
    .addOption(
      new Option(
        '--first-token <token>',
        'first ITM token: [ENC] as BLIP was trained, or [CLS] as Hugging Face',
      )
        .choices(FIRST_TOKENS)
        .default(f.firstToken),
    )
    .option('--max-text-length <n>', 'ITM/ITC text token budget', intArg, f.maxTextLength);
}

export function filterFromFlags(o: FilterFlags): FilterOptions {
  const f = CAPFILT_FILTER;
  return {
    threshold: o.threshold ?? f.threshold,
    consider: o.consider ?? f.consider,
    keepTop: o.keepTop ?? f.keepTop,
    normalizeWebText: o.normalize ?? f.normalizeWebText,
    firstToken: o.firstToken,
    maxTextLength: o.maxTextLength,
  };
}

// ---- engines ---------------------------------------------------------------------------------

export interface EngineFlags {
  device: string;
  /** false with --no-whole-graph; true (the device's default) otherwise. */
  wholeGraph: boolean;
  /** Unset on a worker, where it overrides the run's batch size only when given. */
  batchSize?: number;
  visionBatchSize: number;
  threads: number;
}

/**
 * Where and how the models run (run, caption, score, worker). On a worker `batchSize` is
 * 'override': unset unless given, so that the run's own batch size applies.
 */
export function addEngineFlags(cmd: Command, batchSize: 'default' | 'override' = 'default'): Command {
  const batchSizeDefault = batchSize === 'default' ? DEFAULT_BATCH_SIZE : undefined;
  cmd
    .option(
      '--device <device>',
      'cpu, cuda, cuda:N, webgpu (Vulkan), or auto (CUDA when it loads, else CPU)',
      DEFAULT_ENGINE.device,
    )
    .option(
      '--batch-size <n>',
      'decoder rows (images × captions or beams) and ITM images per call' +
        (batchSizeDefault === undefined ? ' (default: the run option)' : ''),
      intArg,
      batchSizeDefault,
    )
    .option(
      '--vision-batch-size <n>',
      'images per vision-encoder call (CPUs prefer small ones)',
      positiveInt,
      DEFAULT_ENGINE.visionBatchSize,
    )
    .option(
      '--threads <n>',
      'onnxruntime threads per operator (0: one per core)',
      nonNegativeInt,
      DEFAULT_ENGINE.intraOpThreads,
    )
    .option(
      '--no-whole-graph',
      'call vision, cross K/V and decoder or ITM/ITC one by one from the host instead of one graph call per batch',
    );
  return addAlias(cmd, '--intra-op-threads <n>', 'threads', nonNegativeInt);
}

/** The engine options from parsed flags, range-checked (a UsageError names the bad flag). */
export function engineFromFlags(o: EngineFlags): EngineOptions {
  validateEngine({
    device: o.device,
    batchSize: o.batchSize,
    visionBatchSize: o.visionBatchSize,
    intraOpThreads: o.threads,
  });
  return {
    device: o.device as EngineOptions['device'],
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    visionBatchSize: o.visionBatchSize,
    intraOpThreads: o.threads,
    ...(o.wholeGraph === false ? { wholeGraph: false } : {}),
  };
}

// ---- inputs, limits, output, S3 ---------------------------------------------------------------

export interface S3Flags {
  s3Endpoint?: string;
  s3PathStyle?: boolean;
  s3Region?: string;
}

/** Where S3 is: every command that reads or writes s3:// locations. */
export function addS3Flags(cmd: Command): Command {
  return cmd
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL)')
    .option('--s3-path-style', 'path-style S3 addressing (MinIO and most S3-compatible stores)')
    .option('--s3-region <region>', 'S3 region (default: AWS_REGION or us-east-1)');
}

export function s3FromFlags(o: S3Flags): S3Options {
  return {
    ...(o.s3Endpoint ? { endpoint: o.s3Endpoint } : {}),
    ...(o.s3PathStyle ? { forcePathStyle: true } : {}),
    ...(o.s3Region ? { region: o.s3Region } : {}),
  };
}

export interface InputFlags extends S3Flags {
  imageColumn?: string;
  textColumn?: string;
  shardSize: number;
  gzip?: boolean;
  outputFormat: DatasetFormat;
  maxPixels: number;
  maxBytes: number;
  decodeTimeout: number;
  fetchTimeout: number;
  fetchRetries: number;
  fetchConcurrency: number;
  allowPrivateNetwork?: boolean;
}

/** Where image references may point besides the input's own folder or bucket. */
export interface SourceFlags {
  allowRoot?: string[];
  allowBucket?: string[];
}

/** `--allow-root`, `--allow-bucket`: for runs, and for `export`, which reads the images again. */
export function addSourceFlags(cmd: Command): Command {
  return cmd
    .option(
      '--allow-root <dir...>',
      "local folders image references may read besides the input's own (none for an S3 input)",
    )
    .option('--allow-bucket <name...>', "S3 buckets image references may read besides the input's own");
}

export function sourcesFromFlags(o: SourceFlags): SourcePolicy {
  return { localRoots: (o.allowRoot ?? []).map((r) => resolve(r)), s3Buckets: o.allowBucket ?? [] };
}

/** How inputs are read, fetched and decoded, and how shards are written (run, produce, schedule). */
export function addInputFlags(cmd: Command): Command {
  const i = DEFAULT_INPUT;
  const l = DEFAULT_LIMITS;
  cmd
    .option(
      '--image-column <name>',
      `manifest column with the image reference, any case (default: the first of ${RECOGNISED_COLUMNS.image.join(', ')})`,
    )
    .option(
      '--text-column <name>',
      `manifest column with the text, any case (default: the first of ${RECOGNISED_COLUMNS.text.join(', ')})`,
    )
    .option(
      '--shard-size <n>',
      'pairs per shard for JSONL/CSV/TSV manifests and image folders',
      intArg,
      i.shardSize,
    )
    .option('--gzip', 'write part-<shard>.jsonl.gz')
    .addOption(
      new Option(
        '--output-format <format>',
        'the clean dataset written beside the records: part-<shard>.tar (WebDataset: the kept images with their texts and scores) or part-<shard>.parquet (one row per kept text)',
      )
        .choices(DATASET_FORMATS)
        .default(DEFAULT_OUTPUT.format),
    )
    .option('--max-pixels <n>', 'refuse images with more pixels (decompression bombs)', intArg, l.maxPixels)
    .option('--max-bytes <n>', 'refuse images larger than this many bytes', intArg, l.maxBytes)
    .option('--decode-timeout <ms>', 'image decode time budget (0: none)', intArg, l.decodeTimeoutMs)
    .option(
      '--fetch-timeout <ms>',
      'image read timeout: per http(s) attempt; for local files and S3, without a byte',
      intArg,
      l.fetchTimeoutMs,
    )
    .option(
      '--fetch-retries <n>',
      'extra http(s) attempts on network errors, 429 and 5xx',
      intArg,
      l.fetchRetries,
    )
    .option('--fetch-concurrency <n>', 'images fetched and decoded at once', intArg, l.concurrency)
    .option('--allow-private-network', PRIVATE_NETWORK_HELP);
  addSourceFlags(cmd);
  // `--concurrency` meant this in `run`, and shard jobs in flight in `worker`: one name, one meaning now.
  addAlias(cmd, '--concurrency <n>', 'fetchConcurrency', intArg);
  return addS3Flags(cmd);
}

const PRIVATE_NETWORK_HELP = 'let image URLs reach loopback/private/link-local addresses';

export interface WorkerLimitFlags {
  readRoot?: string[];
  writeRoot?: string[];
  allowPrivateNetwork?: boolean;
}

/**
 * `capfilt worker`: where the runs it serves may read and write, the operator's limit that every
 * run must fit in. Not a run's `--allow-root`, which widens what its image references may read.
 */
export function addWorkerLimitFlags(cmd: Command): Command {
  // On a limited worker a run's own --allow-private-network is honoured only with the worker's.
  return cmd
    .option(
      '--read-root <location...>',
      "folders, s3://bucket[/prefix] or http(s) prefixes a run's input, human inputs and sources must lie in (default: anywhere, warned)",
    )
    .option(
      '--write-root <location...>',
      "folders or s3://bucket[/prefix] a run's output must lie in (default: the --read-root locations)",
    )
    .option('--allow-private-network', PRIVATE_NETWORK_HELP);
}

export function workerLimitsFromFlags(o: WorkerLimitFlags): WorkerLimits {
  return validateWorkerLimits({
    ...(o.readRoot ? { readRoots: o.readRoot } : {}),
    ...(o.writeRoot ? { writeRoots: o.writeRoot } : {}),
    ...(o.allowPrivateNetwork ? { privateNetwork: true } : {}),
  });
}

/** Every flag that becomes a RunOptions value. */
export type RunOptionFlags = InputFlags & SourceFlags & DecodingFlags & FilterFlags & { batchSize: number };

/** run, produce and schedule: the flags that make up a run's options, with the same defaults. */
export function addRunOptionFlags(cmd: Command): Command {
  return addInputFlags(addFilterFlags(addDecodingFlags(cmd)));
}

/** run, produce and refilter: the one way to replace what an output folder holds (output/prepare.ts). */
export function addOverwriteFlag(cmd: Command): Command {
  return cmd.option(
    '--overwrite',
    'replace the run the output folder holds (its capfilt files are removed first)',
  );
}

/** The batch size flag of commands that do not run the models themselves (produce, schedule). */
export function addBatchSizeFlag(cmd: Command): Command {
  return cmd.option(
    '--batch-size <n>',
    'decoder rows and ITM images per model call (a worker may override it)',
    intArg,
    DEFAULT_BATCH_SIZE,
  );
}

/** The one typed, validated RunOptions value from parsed flags. */
export function runOptionsFromFlags(o: RunOptionFlags): RunOptions {
  return validateRunOptions({
    decoding: decodingFromFlags(o),
    filter: filterFromFlags(o),
    input: {
      ...(o.imageColumn !== undefined ? { imageColumn: o.imageColumn } : {}),
      ...(o.textColumn !== undefined ? { textColumn: o.textColumn } : {}),
      shardSize: o.shardSize,
    },
    limits: {
      maxBytes: o.maxBytes,
      maxPixels: o.maxPixels,
      decodeTimeoutMs: o.decodeTimeout,
      fetchTimeoutMs: o.fetchTimeout,
      fetchRetries: o.fetchRetries,
      allowPrivateNetwork: o.allowPrivateNetwork === true,
      concurrency: o.fetchConcurrency,
    },
    output: { compression: o.gzip ? 'gzip' : 'none', format: o.outputFormat },
    sources: sourcesFromFlags(o),
    batchSize: o.batchSize,
  });
}
