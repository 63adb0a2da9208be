import type { Command } from 'commander';
import { Storage } from '../io/storage/storage.js';
import { describeRetried, retryRun } from '../queue/retry.js';
import { addConnectionFlags, type ConnectionFlags, openContext } from './connection.js';
import { addS3Flags, type S3Flags, s3FromFlags } from './flags.js';

export interface RetryCommandOptions extends ConnectionFlags, S3Flags {
  json?: boolean;
}

/** `capfilt retry <run>`: the run's failed shards, enqueued again with its stored options. */
export function registerRetry(program: Command): void {
  const cmd = program
    .command('retry <run>')
    .description("re-run a distributed run's failed shards with the options it was produced with")
    .option('--json', 'print JSON');
  addS3Flags(addConnectionFlags(cmd)).action(async (runId: string, o: RetryCommandOptions) => {
    const ctx = await openContext(o);
    const storage = new Storage({ s3: s3FromFlags(o) });
    try {
      const result = await retryRun(ctx, storage, runId);
      if (o.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      process.stdout.write(`capfilt: ${describeRetried(result)}\n`);
    } finally {
      storage.close();
      await ctx.close();
    }
  });
}
