import type { Command } from 'commander';
import { NotFoundError } from '../core/errors.js';
import { collectStatus, formatStatus } from '../queue/status.js';
import { addConnectionFlags, type ConnectionFlags, openContext } from './connection.js';

export interface StatusCommandOptions extends ConnectionFlags {
  run?: string;
  json?: boolean;
}

/** `capfilt status`: runs' progress and the queues' job counts. */
export function registerStatus(program: Command): void {
  addConnectionFlags(
    program
      .command('status')
      .description('progress of runs: shards done/total, samples/s, kept ratios, failures')
      .option('--run <id>', 'one run (default: the 10 newest)')
      .option('--json', 'print JSON'),
  ).action(async (o: StatusCommandOptions) => {
    const ctx = await openContext(o);
    try {
      const report = await collectStatus(ctx, o.run);
      if (o.run && report.runs.length === 0) throw new NotFoundError(`run ${o.run} (prefix ${ctx.prefix})`);
      process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
    } finally {
      await ctx.close();
    }
  });
}
