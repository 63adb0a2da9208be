import type { Command } from 'commander';
import { addSchedule, listSchedules, parseEvery, removeSchedule } from '../queue/schedule.js';
import { addConnectionFlags, type ConnectionFlags, openContext } from './connection.js';
import { addBatchSizeFlag, addRunOptionFlags, runOptionsFromFlags } from './flags.js';
import { addRunTargetFlags, type ProduceCommandOptions } from './produce.js';

export interface ScheduleAddOptions extends Omit<ProduceCommandOptions, 'run' | 'overwrite'> {
  cron?: string;
  every?: string;
  tz?: string;
}

async function addCommand(id: string, o: ScheduleAddOptions): Promise<void> {
  const options = runOptionsFromFlags(o);
  const ctx = await openContext(o);
  try {
    await addSchedule(ctx, {
      id,
      ...(o.cron ? { cron: o.cron } : {}),
      ...(o.every ? { every: parseEvery(o.every) } : {}),
      ...(o.tz ? { tz: o.tz } : {}),
      produce: {
        input: o.input,
        output: o.output,
        options,
        mode: o.mode,
        ...(o.human?.length ? { human: o.human } : {}),
      },
    });
    process.stdout.write(`capfilt: schedule ${id} saved (runs need a worker serving the produce stage)\n`);
  } finally {
    await ctx.close();
  }
}

async function listCommand(o: ConnectionFlags): Promise<void> {
  const ctx = await openContext(o);
  try {
    for (const s of await listSchedules(ctx)) {
      const when = s.cron ? `cron "${s.cron}"` : `every ${s.every} ms`;
      const next = s.next ? new Date(s.next).toISOString() : '-';
      process.stdout.write(`${s.id}\t${when}\tnext ${next}\t${s.input} -> ${s.output}\n`);
    }
  } finally {
    await ctx.close();
  }
}

async function removeCommand(id: string, o: ConnectionFlags): Promise<void> {
  const ctx = await openContext(o);
  try {
    const removed = await removeSchedule(ctx, id);
    process.stdout.write(removed ? `capfilt: schedule ${id} removed\n` : `capfilt: no schedule ${id}\n`);
    if (!removed) process.exitCode = 1;
  } finally {
    await ctx.close();
  }
}

/** `capfilt schedule add|list|remove`: re-run produce on a cron pattern or interval. */
export function registerSchedule(program: Command): void {
  const schedule = program.command('schedule').description('re-run produce on a cron pattern or interval');
  const add = schedule
    .command('add <id>')
    .description('add or replace a schedule; each firing processes only new or changed shards')
    .option('--cron <pattern>', 'cron pattern, e.g. "0 3 * * *"')
    .option('--every <duration>', 'interval: 90s, 10m, 6h, 1d')
    .option('--tz <zone>', 'time zone of the cron pattern');
  addBatchSizeFlag(addRunOptionFlags(addConnectionFlags(addRunTargetFlags(add))));
  add.action(addCommand);
  addConnectionFlags(schedule.command('list').description('list schedules')).action(listCommand);
  addConnectionFlags(schedule.command('remove <id>').description('remove a schedule')).action(removeCommand);
}
