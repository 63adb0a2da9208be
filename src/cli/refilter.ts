import type { Command } from 'commander';
import { UsageError } from '../core/errors.js';
import type { FilterOptions } from '../core/types.js';
import { validateDecisionChange } from '../core/validate.js';
import { Storage } from '../io/storage/storage.js';
import { refilter } from '../pipeline/dataset.js';
import { addDecisionFlags, addOverwriteFlag, addS3Flags, type S3Flags, s3FromFlags } from './flags.js';

export interface RefilterCommandOptions extends S3Flags {
  input: string;
  output: string;
  threshold?: number;
  consider?: FilterOptions['consider'];
  keepTop?: number;
  gzip?: boolean;
  overwrite?: boolean;
}

async function refilterCommand(o: RefilterCommandOptions): Promise<void> {
  if (o.threshold === undefined && o.consider === undefined && o.keepTop === undefined) {
    throw new UsageError('refilter needs at least one of --threshold, --consider, --keep-top');
  }
  const change = { threshold: o.threshold, consider: o.consider, keepTop: o.keepTop };
  validateDecisionChange(change);
  const storage = new Storage({ s3: s3FromFlags(o) });
  try {
    const r = await refilter(storage, o.input, o.output, change, o.gzip ? 'gzip' : 'none', o.overwrite);
    process.stdout.write(
      `capfilt: refiltered ${r.records} records in ${r.shards} shards; ${r.keptTexts} texts kept -> ${o.output}\n`,
    );
  } finally {
    storage.close();
  }
}

/** `capfilt refilter`: re-decide from stored scores, no model (DataComp-style). */
export function registerRefilter(program: Command): void {
  const cmd = program
    .command('refilter')
    .description('re-decide which texts to keep from the stored scores, without loading a model')
    .requiredOption('-i, --input <loc>', 'a capfilt output folder or prefix')
    .requiredOption('-o, --output <loc>', 'where to write the re-filtered dataset')
    .option('--gzip', 'write part-<shard>.jsonl.gz');
  // No defaults here: what is not given keeps the value the output was made with.
  addOverwriteFlag(addS3Flags(addDecisionFlags(cmd, false)));
  cmd.action(refilterCommand);
}
