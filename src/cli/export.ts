import { once } from 'node:events';
import { type Command, Option } from 'commander';
import { Storage } from '../io/storage/storage.js';
import { exportBlip } from '../pipeline/dataset.js';
import { addS3Flags, type S3Flags, s3FromFlags } from './flags.js';

export interface ExportCommandOptions extends S3Flags {
  input: string;
  format: 'blip';
  output?: string;
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

async function toStdout(storage: Storage, input: string): Promise<void> {
  try {
    await exportBlip(storage, input, chunkWriter(process.stdout));
  } catch (err) {
    // stdout's reader stopped early (`capfilt export | head`): nobody is left to write to.
    if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
  }
}

async function toFile(storage: Storage, input: string, output: string): Promise<void> {
  const writer = await storage.createAtomicWriter(output);
  try {
    const n = await exportBlip(storage, input, chunkWriter(writer.stream));
    await writer.commit();
    process.stderr.write(`capfilt: ${n} annotations -> ${output}\n`);
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/** `capfilt export --format blip`: BLIP/LAVIS pre-training annotations of the kept texts. */
export function registerExport(program: Command): void {
  const cmd = program
    .command('export')
    .description('export kept texts as BLIP/LAVIS pre-training annotations ([{"image"|"url", "caption"}])')
    .requiredOption('-i, --input <loc>', 'a capfilt output folder or prefix')
    .addOption(new Option('--format <format>', 'annotation format').choices(['blip']).default('blip'))
    .option('-o, --output <loc>', 'file to write (default: stdout)');
  addS3Flags(cmd).action(async (o: ExportCommandOptions) => {
    const storage = new Storage({ s3: s3FromFlags(o) });
    try {
      await (o.output ? toFile(storage, o.input, o.output) : toStdout(storage, o.input));
    } finally {
      storage.close();
    }
  });
}
