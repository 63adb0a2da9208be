import { type Command, InvalidArgumentError, Option } from 'commander';
import type { EngineOptions } from '../captioner/captioner.js';
import { CAPFILT_DECODING, CAPFILT_FILTER } from '../core/defaults.js';
import type { DecodingOptions, FilterOptions } from '../core/types.js';

/**
 * The decoding, filter and device options every command that runs the models shares (caption,
 * score, run, worker, produce): declared once here so their names and defaults never drift.
 */

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

export function addDecodingOptions(cmd: Command): Command {
  const d = CAPFILT_DECODING;
  return cmd
    .addOption(
      new Option('--strategy <name>', 'caption decoding')
        .choices(['nucleus', 'greedy', 'beam'])
        .default(d.strategy),
    )
    .option('--top-p <p>', 'nucleus probability mass', floatArg, d.topP)
    .option('--top-k <k>', 'keep the k most likely tokens before top-p (0: off)', intArg, d.topK)
    .option(
      '--repetition-penalty <r>',
      'penalty on ids already generated (default 1.1 for nucleus, 1.0 for greedy and beam, as BLIP)',
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

/** Commander's parsed values: the decoding options, the penalty left unset unless given. */
export type DecodingCli = Omit<DecodingOptions, 'repetitionPenalty'> & { repetitionPenalty?: number };

export function decodingFromCli(o: DecodingCli): DecodingOptions {
  return {
    strategy: o.strategy,
    topP: o.topP,
    topK: o.topK,
    repetitionPenalty:
      o.repetitionPenalty ?? (o.strategy === 'nucleus' ? CAPFILT_DECODING.repetitionPenalty : 1),
    numBeams: o.numBeams,
    maxLength: o.maxLength,
    minLength: o.minLength,
    prompt: o.prompt,
    numCaptions: o.numCaptions,
    seed: o.seed,
    temperature: o.temperature,
  };
}

export function addFilterOptions(cmd: Command, withThreshold = true): Command {
  const f = CAPFILT_FILTER;
  if (withThreshold) {
    cmd
      .option(
        '--threshold <p>',
        'keep a text iff its ITM match probability is above this',
        floatArg,
        f.threshold,
      )
      .addOption(
        new Option('--consider <which>', 'texts that may be kept')
          .choices(['web', 'synthetic', 'both'])
          .default(f.consider),
      )
      .option('--keep-top <k>', 'keep at most k texts per image, best first (0: all)', intArg, f.keepTop)
      .option('--no-normalize', 'score web text as is, without BLIP pre_caption');
  }
  return cmd
    .addOption(
      new Option(
        '--first-token <token>',
        'first ITM token: [ENC] as BLIP was trained, or [CLS] as Hugging Face',
      )
        .choices(['enc', 'cls'])
        .default(f.firstToken),
    )
    .option('--max-text-length <n>', 'ITM/ITC text token budget', intArg, f.maxTextLength);
}

export interface FilterCli {
  threshold?: number;
  consider?: FilterOptions['consider'];
  keepTop?: number;
  normalize?: boolean;
  firstToken: FilterOptions['firstToken'];
  maxTextLength: number;
}

export function filterFromCli(o: FilterCli): FilterOptions {
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

export function addEngineOptions(cmd: Command): Command {
  return cmd
    .option('--device <device>', 'cpu, cuda, cuda:N, or auto (CUDA when it loads, else CPU)', 'cpu')
    .option(
      '--batch-size <n>',
      'decoder rows (images × captions or beams) and ITM images per call',
      intArg,
      16,
    )
    .option('--vision-batch-size <n>', 'images per vision-encoder call (CPUs prefer small ones)', intArg, 2)
    .option('--threads <n>', 'onnxruntime threads per operator (0: one per core)', intArg, 0);
}

export interface EngineCli {
  device: string;
  batchSize: number;
  visionBatchSize: number;
  threads: number;
}

export function engineFromCli(o: EngineCli): EngineOptions {
  return {
    device: o.device as EngineOptions['device'],
    batchSize: o.batchSize,
    visionBatchSize: o.visionBatchSize,
    intraOpThreads: o.threads,
  };
}
