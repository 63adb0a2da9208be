import { once } from 'node:events';
import { type Command, Option } from 'commander';
import { UsageError } from '../core/errors.js';
import { Storage } from '../io/storage/storage.js';
import { exportBlip, refilter } from '../pipeline/dataset.js';
import { floatArg, intArg } from './engine-options.js';
import { addS3Options, type S3Cli, s3OptionsFromCli } from './run.js';

/**
 * Chunks to a stream, with backpressure. A stream error (EPIPE once stdout's reader is gone,
 * ENOSPC) rejects the next write instead of crashing the process as an unhandled 'error' event.
 */
function chunkWriter(stream: NodeJS.WritableStream): (chunk: string) => Promise<void> {
  let failed: unknown = null;
  stream.on('error', (err) => {
    failed ??= err;
  });
  return async (chunk) => {
    if (failed) throw failed;
    if (!stream.write(chunk)) await once(stream, 'drain');
  };
}

export function registerDataset(program: Command): void {
  addS3Options(
    program
      .command('refilter')
      .description('re-decide which texts to keep from the stored scores, without loading a model')
      .requiredOption('-i, --input <loc>', 'a capfilt output folder or prefix')
      .requiredOption('-o, --output <loc>', 'where to write the re-filtered dataset')
      .option('--threshold <p>', 'keep a text iff its ITM match probability is above this', floatArg)
      .addOption(
        new Option('--consider <which>', 'texts that may be kept').choices(['web', 'synthetic', 'both']),
      )
      .option('--keep-top <k>', 'keep at most k texts per image, best first (0: all)', intArg)
      .option('--gzip', 'write part-<shard>.jsonl.gz'),
  ).action(
    async (
      o: S3Cli & {
        input: string;
        output: string;
        threshold?: number;
        consider?: 'web' | 'synthetic' | 'both';
        keepTop?: number;
        gzip?: boolean;
      },
    ) => {
      if (o.threshold === undefined && o.consider === undefined && o.keepTop === undefined) {
        throw new UsageError('refilter needs at least one of --threshold, --consider, --keep-top');
      }
      const storage = new Storage({ s3: s3OptionsFromCli(o) });
      try {
        const r = await refilter(
          storage,
          o.input,
          o.output,
          { threshold: o.threshold, consider: o.consider, keepTop: o.keepTop },
          o.gzip ? 'gzip' : 'none',
        );
        process.stdout.write(
          `capfilt: refiltered ${r.records} records in ${r.shards} shards; ${r.keptTexts} texts kept -> ${o.output}\n`,
        );
      } finally {
        storage.close();
      }
    },
  );

  addS3Options(
    program
      .command('export')
      .description('export kept texts as BLIP/LAVIS pre-training annotations ([{"image"|"url", "caption"}])')
      .requiredOption('-i, --input <loc>', 'a capfilt output folder or prefix')
      .addOption(new Option('--format <format>', 'annotation format').choices(['blip']).default('blip'))
      .option('-o, --output <loc>', 'file to write (default: stdout)'),
  ).action(async (o: S3Cli & { input: string; output?: string }) => {
    const storage = new Storage({ s3: s3OptionsFromCli(o) });
    try {
      if (!o.output) {
        try {
          await exportBlip(storage, o.input, chunkWriter(process.stdout));
        } catch (err) {
          // stdout's reader stopped early (`capfilt export | head`): nobody is left to write to.
          if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
        }
        return;
      }
      const writer = await storage.createAtomicWriter(o.output);
      try {
        const n = await exportBlip(storage, o.input, chunkWriter(writer.stream));
        await writer.commit();
        process.stderr.write(`capfilt: ${n} annotations -> ${o.output}\n`);
      } catch (err) {
        await writer.abort();
        throw err;
      }
    } finally {
      storage.close();
    }
  });
}
