import { type Command, Option } from 'commander';
import { DEFAULT_QUEUE } from '../core/defaults.js';
import { Storage } from '../io/storage/storage.js';
import { type ProduceResult, produceRun } from '../queue/produce.js';
import type { RunMode } from '../queue/runs.js';
import { addConnectionFlags, type ConnectionFlags, openContext } from './connection.js';
import {
  addBatchSizeFlag,
  addOverwriteFlag,
  addRunOptionFlags,
  type RunOptionFlags,
  runOptionsFromFlags,
  s3FromFlags,
} from './flags.js';

export interface ProduceCommandOptions extends ConnectionFlags, RunOptionFlags {
  input: string;
  output: string;
  mode: RunMode;
  run?: string;
  overwrite?: boolean;
  human?: string[];
}

/** The run-level flags `produce` and `schedule add` share. */
export function addRunTargetFlags(cmd: Command): Command {
  return cmd
    .requiredOption('-i, --input <loc>', 'input: local path or s3://bucket/prefix')
    .requiredOption('-o, --output <loc>', 'output folder or s3:// prefix')
    .addOption(
      new Option('--mode <mode>', 'split: caption and filter pools; fused: one job per shard')
        .choices(['split', 'fused'])
        .default(DEFAULT_QUEUE.mode),
    )
    .option('--human <loc...>', 'human-annotated pairs to add unfiltered, marked human');
}

/** What produce did, in words: an existing run is never said to be enqueued again. */
export function describeProduced(r: ProduceResult): string {
  if (!r.existing) {
    return `run ${r.runId}: ${r.enqueued} of ${r.shards} shards enqueued, ${r.skipped} already complete in the output`;
  }
  const failed = r.failed ? `, ${r.failed} failed (capfilt retry ${r.runId} re-runs them)` : '';
  return (
    `run ${r.runId} exists: ${r.enqueued} of its ${r.shards} shards enqueued now (never enqueued before), ` +
    `${r.skipped} complete, ${r.queued ?? 0} still queued or running${failed}`
  );
}

async function produceCommand(o: ProduceCommandOptions): Promise<void> {
  // Options are checked before Redis is touched: a bad value enqueues nothing.
  const options = runOptionsFromFlags(o);
  const ctx = await openContext(o);
  const storage = new Storage({ s3: s3FromFlags(o) });
  try {
    const result = await produceRun(ctx, storage, {
      input: o.input,
      output: o.output,
      options,
      mode: o.mode,
      ...(o.run ? { runId: o.run } : {}),
      overwrite: o.overwrite === true,
      ...(o.human?.length ? { human: o.human } : {}),
    });
    process.stdout.write(`${JSON.stringify(result)}\ncapfilt: ${describeProduced(result)}\n`);
  } finally {
    storage.close();
    await ctx.close();
  }
}

/** `capfilt produce`: a distributed run, one BullMQ flow per shard not already done. */
export function registerProduce(program: Command): void {
  const cmd = program
    .command('produce')
    .description('enqueue a distributed run: one BullMQ flow per input shard not already done')
    .option('--run <id>', 'run id (default: generated); producing the same id again adds nothing');
  addBatchSizeFlag(addRunOptionFlags(addOverwriteFlag(addConnectionFlags(addRunTargetFlags(cmd)))));
  cmd.action(produceCommand);
}
