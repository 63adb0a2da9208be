import { once } from 'node:events';
import { type Command, Option } from 'commander';
import { UsageError } from '../core/errors.js';
import { Storage } from '../io/storage/storage.js';
import { type BlipOptions, exportBlip, exportDataset } from '../pipeline/dataset.js';
import {
  addS3Flags,
  addSourceFlags,
  type S3Flags,
  type SourceFlags,
  s3FromFlags,
  sourcesFromFlags,
} from './flags.js';

export const EXPORT_FORMATS = ['blip', 'webdataset', 'parquet'] as const;

export interface ExportCommandOptions extends S3Flags, SourceFlags {
  input: string;
  format: (typeof EXPORT_FORMATS)[number];
  output?: string;
  imageRoot?: string;
}

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

async function toStdout(storage: Storage, input: string, options: BlipOptions): Promise<void> {
  try {
    await exportBlip(storage, input, chunkWriter(process.stdout), options);
  } catch (err) {
    // stdout's reader stopped early (`capfilt export | head`): nobody is left to write to.
    if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
  }
}

async function toFile(storage: Storage, input: string, output: string, options: BlipOptions): Promise<void> {
  const writer = await storage.createAtomicWriter(output);
  try {
    const n = await exportBlip(storage, input, chunkWriter(writer.stream), options);
    await writer.commit();
    process.stderr.write(`capfilt: ${n} annotations -> ${output}\n`);
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

async function exportCommand(o: ExportCommandOptions): Promise<void> {
  if (o.format !== 'blip' && !o.output) throw new UsageError(`--format ${o.format} needs --output <folder>`);
  if (o.format !== 'blip' && o.imageRoot) throw new UsageError('--image-root is for --format blip');
  const storage = new Storage({ s3: s3FromFlags(o) });
  const sources = sourcesFromFlags(o);
  try {
    if (o.format !== 'blip') {
      const r = await exportDataset(storage, o.input, o.output as string, o.format, { sources });
      process.stderr.write(`capfilt: ${r.samples} images in ${r.shards} ${o.format} shards -> ${o.output}\n`);
      return;
    }
    const options = { sources, ...(o.imageRoot ? { imageRoot: o.imageRoot } : {}) };
    await (o.output ? toFile(storage, o.input, o.output, options) : toStdout(storage, o.input, options));
  } finally {
    storage.close();
  }
}

/** `capfilt export`: the kept texts as BLIP/LAVIS annotations, WebDataset tars or Parquet. */
export function registerExport(program: Command): void {
  const cmd = program
    .command('export')
    .description(
      'export the clean dataset: BLIP/LAVIS annotations ([{"image"|"url", "caption"}]), WebDataset tars or Parquet',
    )
    .requiredOption('-i, --input <loc>', 'a capfilt output folder or prefix')
    .addOption(
      new Option(
        '--format <format>',
        'blip: one JSON list; webdataset: part-<shard>.tar with the original image bytes; parquet: part-<shard>.parquet, one row per kept text',
      )
        .choices(EXPORT_FORMATS)
        .default('blip'),
    )
    .option('-o, --output <loc>', 'blip: the file (default: stdout); webdataset, parquet: the folder')
    .option(
      '--image-root <loc>',
      'blip: write image paths relative to this folder; images not under it (tar members, Parquet bytes) are copied into it',
    );
  addS3Flags(addSourceFlags(cmd)).action(exportCommand);
}
