import { type Command, Option } from 'commander';
import { Storage } from '../io/storage/storage.js';
import { type LocalRunResult, runLocal } from '../pipeline/local-runner.js';
import type { ShardBatchDone } from '../pipeline/shard.js';
import {
  addEngineFlags,
  addOverwriteFlag,
  addRunOptionFlags,
  type EngineFlags,
  engineFromFlags,
  type RunOptionFlags,
  runOptionsFromFlags,
  s3FromFlags,
} from './flags.js';

export interface RunCommandOptions extends RunOptionFlags, EngineFlags {
  input: string;
  output: string;
  captioner: string;
  filter: string;
  human?: string[];
  overwrite?: boolean;
  progress: 'auto' | 'tty' | 'plain' | 'none';
  batchSize: number;
}

/** What an interrupt now would cost: the batch in progress, past the shard's last checkpoint. */
function redoneOnInterrupt(last: ShardBatchDone | null, batchSize: number): string {
  const saved = last ? `shard ${last.shardId} has ${last.pairsDone} pairs checkpointed; ` : '';
  return `${saved}up to ${batchSize} pairs (the batch in progress) will be redone`;
}

/**
 * SIGINT/SIGTERM stop the run after the batch in progress, which is checkpointed: nothing done is
 * lost. A second one exits now, and the next run redoes that batch; the first says so.
 */
function interruptController(batchSize: number): {
  signal: AbortSignal;
  onBatch(b: ShardBatchDone): void;
  dispose(): void;
} {
  const ac = new AbortController();
  let last: ShardBatchDone | null = null;
  const handler = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write(
      `\ncapfilt: ${sig} received, stopping once the batch in progress is checkpointed; ` +
        `again to quit now (${redoneOnInterrupt(last, batchSize)} by the next run)\n`,
    );
    ac.abort(new Error(sig));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: ac.signal,
    onBatch(b) {
      last = b;
    },
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/** The run's outcome on stdout/stderr, and the exit code. */
function report(result: LocalRunResult, output: string): void {
  if (result.interrupted) {
    process.stderr.write(
      `capfilt: interrupted; ${result.processed} shards written this run. Rerun the same command to finish ` +
        '(an unfinished shard resumes from its checkpoint).\n',
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
  const s = result.summary;
  if (!s) return;
  const reasons = Object.entries(s.reasons).map(([k, v]) => `${k} ${v}`);
  process.stdout.write(
    [
      `capfilt: done. ${s.records} pairs in ${s.shards} shards (${result.processed} processed, ${result.skipped} already complete)`,
      `  ok ${s.status.ok}, rejected ${s.status.rejected}${reasons.length ? ` (${reasons.join(', ')})` : ''}`,
      `  kept texts ${s.kept.texts}: web ${s.kept.web}, synthetic ${s.kept.synthetic}, human ${s.kept.human}; images with a kept text ${s.kept.records}`,
      `  output ${output} (summary ${result.summaryUri})`,
      '',
    ].join('\n'),
  );
  if (s.status.ok === 0) {
    // Nothing reached the models: almost always the wrong columns or an unreachable image root.
    process.stderr.write(
      s.records === 0
        ? 'capfilt: the input holds no pairs\n'
        : `capfilt: every pair was rejected (${reasons.join(', ')}); check --image-column, --text-column and the image paths\n`,
    );
    process.exitCode = 1;
  }
}

async function runCommand(o: RunCommandOptions): Promise<void> {
  const options = runOptionsFromFlags(o);
  const storage = new Storage({ s3: s3FromFlags(o) });
  const interrupt = interruptController(options.batchSize);
  try {
    const result = await runLocal({
      input: o.input,
      output: o.output,
      human: o.human,
      captionerDir: o.captioner,
      filterDir: o.filter,
      engine: engineFromFlags(o),
      options,
      storage,
      overwrite: o.overwrite,
      progress: o.progress,
      signal: interrupt.signal,
      onBatch: interrupt.onBatch,
    });
    report(result, o.output);
  } finally {
    interrupt.dispose();
    storage.close();
  }
}

/** `capfilt run`: the whole job on this machine. */
export function registerRun(program: Command): void {
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
    .addOption(
      new Option('--progress <mode>', 'progress display')
        .choices(['auto', 'tty', 'plain', 'none'])
        .default('auto'),
    );
  addEngineFlags(addRunOptionFlags(addOverwriteFlag(cmd)));
  cmd.action(runCommand);
}
