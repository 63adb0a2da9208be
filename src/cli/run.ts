import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { DEFAULT_RUN_OPTIONS } from '../core/defaults.js';
import { UsageError } from '../core/errors.js';
import type { RunOptions } from '../core/types.js';
import { validateRunOptions } from '../core/validate.js';
import type { S3Options } from '../io/s3.js';
import { Storage } from '../io/storage/storage.js';
import { runLocal } from '../pipeline/local-runner.js';
import {
  addDecodingOptions,
  addEngineOptions,
  addFilterOptions,
  type DecodingCli,
  decodingFromCli,
  type EngineCli,
  engineFromCli,
  type FilterCli,
  filterFromCli,
  intArg,
} from './engine-options.js';

/** Input, limits and output options shared by `run` and the queue producer. */
export function addRunIoOptions(cmd: Command): Command {
  const d = DEFAULT_RUN_OPTIONS;
  cmd
    .option(
      '--image-column <name>',
      'manifest column with the image reference (falls back to url/path/key)',
      d.input.imageColumn,
    )
    .option('--text-column <name>', 'manifest column with the text (falls back to text)', d.input.textColumn)
    .option(
      '--shard-size <n>',
      'pairs per shard for JSONL/CSV/TSV manifests and image folders',
      intArg,
      d.input.shardSize,
    )
    .option('--gzip', 'write part-<shard>.jsonl.gz')
    .option(
      '--max-pixels <n>',
      'refuse images with more pixels (decompression bombs)',
      intArg,
      d.limits.maxPixels,
    )
    .option('--max-bytes <n>', 'refuse images larger than this many bytes', intArg, d.limits.maxBytes)
    .option('--decode-timeout <ms>', 'image decode time budget', intArg, d.limits.decodeTimeoutMs)
    .option(
      '--fetch-timeout <ms>',
      'http(s) image download timeout per attempt',
      intArg,
      d.limits.fetchTimeoutMs,
    )
    .option(
      '--fetch-retries <n>',
      'extra http(s) attempts on network errors, 429 and 5xx',
      intArg,
      d.limits.fetchRetries,
    )
    .option('--concurrency <n>', 'images fetched and decoded at once', intArg, d.limits.concurrency)
    .option('--allow-private-network', 'let image URLs reach loopback/private/link-local addresses');
  return addS3Options(cmd);
}

/** Where S3 is: every command that reads or writes s3:// locations. */
export function addS3Options(cmd: Command): Command {
  return cmd
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL)')
    .option('--s3-path-style', 'path-style S3 addressing (MinIO and most S3-compatible stores)')
    .option('--s3-region <region>', 'S3 region (default: AWS_REGION or us-east-1)');
}

export interface S3Cli {
  s3Endpoint?: string;
  s3PathStyle?: boolean;
  s3Region?: string;
}

export interface RunIoCli extends S3Cli {
  imageColumn: string;
  textColumn: string;
  shardSize: number;
  gzip?: boolean;
  maxPixels: number;
  maxBytes: number;
  decodeTimeout: number;
  fetchTimeout: number;
  fetchRetries: number;
  concurrency: number;
  allowPrivateNetwork?: boolean;
}

export type RunCli = RunIoCli & DecodingCli & FilterCli & EngineCli;

/** The one typed RunOptions value from parsed CLI options. */
export function runOptionsFromCli(o: RunCli): RunOptions {
  return validateRunOptions({
    decoding: decodingFromCli(o),
    filter: filterFromCli(o),
    input: { imageColumn: o.imageColumn, textColumn: o.textColumn, shardSize: o.shardSize },
    limits: {
      maxBytes: o.maxBytes,
      maxPixels: o.maxPixels,
      decodeTimeoutMs: o.decodeTimeout,
      fetchTimeoutMs: o.fetchTimeout,
      fetchRetries: o.fetchRetries,
      allowPrivateNetwork: o.allowPrivateNetwork === true,
      concurrency: o.concurrency,
    },
    output: { compression: o.gzip ? 'gzip' : 'none' },
    batchSize: o.batchSize,
  });
}

export function s3OptionsFromCli(o: S3Cli): S3Options {
  return {
    ...(o.s3Endpoint ? { endpoint: o.s3Endpoint } : {}),
    ...(o.s3PathStyle ? { forcePathStyle: true } : {}),
    ...(o.s3Region ? { region: o.s3Region } : {}),
  };
}

/** SIGINT/SIGTERM stop the run between batches (no partial shard is left); a second one exits now. */
function interruptController(): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write(
      `\ncapfilt: ${sig} received, stopping after the current batch (again to quit now)\n`,
    );
    ac.abort(new Error(sig));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: ac.signal,
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

interface RunCommandCli extends RunCli {
  input: string;
  output: string;
  captioner: string;
  filter: string;
  human?: string[];
  overwrite?: boolean;
  progress: 'auto' | 'tty' | 'plain' | 'none';
}

async function runCommand(o: RunCommandCli): Promise<void> {
  const options = runOptionsFromCli(o);
  const storage = new Storage({ s3: s3OptionsFromCli(o) });
  const interrupt = interruptController();
  try {
    const result = await runLocal({
      input: o.input,
      output: o.output,
      human: o.human,
      captionerDir: o.captioner,
      filterDir: o.filter,
      engine: engineFromCli(o),
      options,
      storage,
      overwrite: o.overwrite,
      progress: o.progress,
      signal: interrupt.signal,
    });
    const s = result.summary;
    if (result.interrupted) {
      process.stderr.write(
        `capfilt: interrupted; ${result.processed} shards written this run. Rerun the same command to finish.\n`,
      );
      process.exitCode = 130;
      return;
    }
    if (result.failed.length > 0) {
      process.stderr.write(
        `capfilt: ${result.failed.length} of ${result.shards} shards failed; rerun to retry them\n`,
      );
      process.exitCode = 1;
      return;
    }
    if (s) {
      process.stdout.write(
        [
          `capfilt: done. ${s.records} pairs in ${s.shards} shards (${result.processed} processed, ${result.skipped} already complete)`,
          `  ok ${s.status.ok}, rejected ${s.status.rejected}${
            Object.keys(s.reasons).length
              ? ` (${Object.entries(s.reasons)
                  .map(([k, v]) => `${k} ${v}`)
                  .join(', ')})`
              : ''
          }`,
          `  kept texts ${s.kept.texts}: web ${s.kept.web}, synthetic ${s.kept.synthetic}, human ${s.kept.human}; images with a kept text ${s.kept.records}`,
          `  output ${o.output} (summary ${result.summaryUri})`,
          '',
        ].join('\n'),
      );
    }
  } finally {
    interrupt.dispose();
    storage.close();
  }
}

function addRunCommand(program: Command): void {
  const cmd = program
    .command('run')
    .description('caption and filter a dataset on this machine: read, decode, caption, filter, write shards')
    .requiredOption(
      '-i, --input <loc>',
      'manifest, tar, parquet, image folder, or a folder/s3:// prefix of them',
    )
    .requiredOption('-o, --output <loc>', 'output folder or s3://bucket/prefix')
    .requiredOption('--captioner <dir>', 'converted captioner (capfilt models import)')
    .requiredOption('--filter <dir>', 'converted ITM filter (capfilt models import)')
    .option('--human <loc...>', 'human-annotated pairs to add unfiltered, marked human')
    .option('--overwrite', 'redo shards that are already complete')
    .addOption(
      new Option('--progress <mode>', 'progress display')
        .choices(['auto', 'tty', 'plain', 'none'])
        .default('auto'),
    );
  addRunIoOptions(addEngineOptions(addFilterOptions(addDecodingOptions(cmd))));
  cmd.action(runCommand);
}

/** Where `npm run demo` keeps the converted tiny models. */
const DEMO_MODELS = '.cache/models';

function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run capfilt on the bundled examples with the tiny test models (local mode)')
    .option('--format <fmt>', 'which copy of the examples: jsonl or webdataset', 'jsonl')
    .option('-o, --output <dir>', 'output folder', '.cache/demo-output')
    .action(async (o: { format: string; output: string }) => {
      const root = process.cwd();
      const input =
        o.format === 'webdataset'
          ? join(root, 'examples/webdataset')
          : join(root, 'examples/jsonl/captions.jsonl');
      if (!existsSync(input))
        throw new UsageError(`${input} not found; run the demo from the repository root`);
      const { importModel } = await import('../model/convert/import.js');
      const dirs: Record<string, string> = {};
      for (const kind of ['captioner', 'filter']) {
        const dir = resolve(DEMO_MODELS, `blip-tiny-${kind}`);
        if (!existsSync(join(dir, 'manifest.json'))) {
          process.stderr.write(`capfilt: converting test/fixtures/blip-tiny/${kind} into ${dir}\n`);
          await importModel(join(root, 'test/fixtures/blip-tiny', kind), dir, { name: `blip-tiny-${kind}` });
        }
        dirs[kind] = dir;
      }
      process.stderr.write('capfilt: the tiny models are random: their captions are gibberish by design\n');
      const args = [
        'run',
        '--input',
        input,
        '--output',
        resolve(o.output),
        '--captioner',
        dirs.captioner,
        '--filter',
        dirs.filter,
        '--shard-size',
        '8',
        '--num-captions',
        '2',
        '--overwrite',
        '--human',
        join(root, 'examples/human/annotations.jsonl'),
      ];
      await program.parseAsync(args, { from: 'user' });
      process.stdout.write(
        `capfilt: demo output in ${resolve(o.output)} (part-*.jsonl, part-*.stats.json, _summary.json)\n`,
      );
    });
}

export function registerRun(program: Command): void {
  addRunCommand(program);
  addDemoCommand(program);
}
