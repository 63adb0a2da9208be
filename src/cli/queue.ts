import { type Command, InvalidArgumentError, Option } from 'commander';
import { UsageError } from '../core/errors.js';
import type { RunOptions } from '../core/types.js';
import { authFromEnv } from '../dashboard/auth.js';
import { createDashboard } from '../dashboard/server.js';
import { Storage } from '../io/storage/storage.js';
import { resolveRedisUrl } from '../queue/connection.js';
import { openQueueContext, type QueueContext } from '../queue/context.js';
import { DEFAULT_PREFIX, isStage, STAGES, type Stage } from '../queue/names.js';
import { produceRun } from '../queue/produce.js';
import type { RunMode } from '../queue/runs.js';
import { addSchedule, listSchedules, parseEvery, removeSchedule } from '../queue/schedule.js';
import { onShutdown } from '../queue/shutdown.js';
import { collectStatus, formatStatus } from '../queue/status.js';
import { startWorkerPool } from '../queue/worker.js';
import { addDecodingOptions, addFilterOptions, intArg } from './engine-options.js';
import { addRunIoOptions, type RunCli, type RunIoCli, runOptionsFromCli, s3OptionsFromCli } from './run.js';

interface ConnectionFlags {
  redis?: string;
  prefix?: string;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function withConnection(cmd: Command): Command {
  return cmd
    .option('--redis <url>', 'Redis URL (redis:// or rediss://, password in the URL); default $REDIS_URL')
    .option('--prefix <name>', 'key prefix of this deployment (default $CAPFILT_PREFIX or capfilt)');
}

async function open(flags: ConnectionFlags, role: 'worker' | 'client' = 'client'): Promise<QueueContext> {
  return await openQueueContext({
    redisUrl: resolveRedisUrl(flags.redis),
    prefix: flags.prefix ?? process.env.CAPFILT_PREFIX ?? DEFAULT_PREFIX,
    role,
  });
}

function parseStages(text: string): Stage[] {
  const parts = text.split(',').map((s) => s.trim());
  const stages = new Set<Stage>();
  for (const p of parts) {
    if (p === 'all') for (const s of STAGES) stages.add(s);
    else if (isStage(p)) stages.add(p);
    else throw new UsageError(`unknown stage ${p}: use caption, filter, write, fused, produce or all`);
  }
  return [...stages];
}

/** The run options a queued run records: the same flags and parsing as `capfilt run`. */
function addRunOptionFlags(cmd: Command): Command {
  addRunIoOptions(addFilterOptions(addDecodingOptions(cmd)));
  return cmd.option('--batch-size <n>', 'images per model call (a worker may override it)', intArg, 8);
}

function runOptionsFromFlags(flags: Record<string, unknown>): RunOptions {
  return runOptionsFromCli(flags as unknown as RunCli);
}

function storageFromFlags(flags: Record<string, unknown>): Storage {
  return new Storage({
    s3: s3OptionsFromCli(flags as Pick<RunIoCli, 's3Endpoint' | 's3PathStyle' | 's3Region'>),
  });
}

/** `produce`, `worker`, `status`, `dashboard` and `schedule`: capfilt over BullMQ. */
export function registerQueue(program: Command): void {
  const produce = withConnection(
    program
      .command('produce')
      .description('enqueue a distributed run: one BullMQ flow per input shard not already done')
      .requiredOption('--input <location>', 'input: local path or s3://bucket/prefix')
      .requiredOption('--output <location>', 'output folder or s3:// prefix')
      .addOption(
        new Option('--mode <mode>', 'split: caption and filter pools; fused: one job per shard')
          .choices(['split', 'fused'])
          .default('split'),
      )
      .option('--run <id>', 'run id (default: generated); producing the same id again adds nothing')
      .option('--overwrite', 'redo shards even when complete and unchanged')
      .option('--human <loc...>', 'human-annotated pairs to add unfiltered, marked human'),
  );
  addRunOptionFlags(produce);
  produce.action(async (flags: ConnectionFlags & Record<string, unknown>) => {
    // Options are checked before Redis is touched: a bad value enqueues nothing.
    const options = runOptionsFromFlags(flags);
    const ctx = await open(flags);
    const storage = storageFromFlags(flags);
    try {
      const result = await produceRun(ctx, storage, {
        input: String(flags.input),
        output: String(flags.output),
        options,
        mode: flags.mode as RunMode,
        ...(flags.run ? { runId: String(flags.run) } : {}),
        overwrite: Boolean(flags.overwrite),
        ...(Array.isArray(flags.human) ? { human: flags.human.map(String) } : {}),
      });
      process.stdout.write(
        `${JSON.stringify(result)}\ncapfilt: run ${result.runId}: ${result.enqueued} of ${result.shards} shards enqueued, ${result.skipped} already done\n`,
      );
    } finally {
      storage.close();
      await ctx.close();
    }
  });

  withConnection(
    program
      .command('worker')
      .description('serve one or more stages as a pool member (models load once)')
      .requiredOption('--stage <stages>', 'caption, filter, write, fused, produce, all, or a comma list')
      .option('--captioner <dir>', 'converted captioner model (caption, fused)')
      .option('--filter <dir>', 'converted filter model (filter, fused)')
      .option('--concurrency <n>', 'shard jobs in flight per stage', positiveInt, 1)
      .option(
        '--batch-size <n>',
        'images per model call (overrides the run option on this worker)',
        positiveInt,
      )
      .option('--device <device>', 'cpu, cuda, cuda:N or auto', 'cpu')
      .option(
        '--intra-op-threads <n>',
        'onnxruntime threads per operator (0: one per core)',
        (v) => Number(v),
        0,
      )
      .option(
        '--lock-duration <ms>',
        'job lock lifetime (default 120000); must exceed twice the longest model call',
        positiveInt,
      )
      .option(
        '--shutdown-grace <ms>',
        'on SIGTERM, how long active shards may finish before the worker exits (then they are taken over)',
        positiveInt,
        60_000,
      )
      .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL)')
      .option('--s3-path-style', 'path-style S3 addressing (MinIO and most S3-compatible stores)')
      .option('--s3-region <region>', 'S3 region (default: AWS_REGION or us-east-1)'),
  ).action(async (flags: ConnectionFlags & Record<string, string | number | undefined>) => {
    const stages = parseStages(String(flags.stage));
    const ctx = await open(flags, 'worker');
    const lockMs = flags.lockDuration === undefined ? undefined : Number(flags.lockDuration);
    const storage = storageFromFlags(flags);
    const pool = await startWorkerPool(ctx, {
      stages,
      engines: {
        captionerDir: flags.captioner as string | undefined,
        filterDir: flags.filter as string | undefined,
        device: flags.device as 'cpu',
        intraOpThreads: Number(flags.intraOpThreads ?? 0),
        batchSize: flags.batchSize === undefined ? undefined : Number(flags.batchSize),
      },
      concurrency: Number(flags.concurrency ?? 1),
      storage,
      ...(lockMs ? { lock: { lockDuration: lockMs, stalledInterval: Math.max(1_000, lockMs / 2) } } : {}),
    }).catch(async (err: unknown) => {
      // A worker connection reconnects forever: left open, it would keep the failed process alive.
      storage.close();
      await ctx.close();
      throw err;
    });
    onShutdown([() => pool.close(), () => ctx.close()], { graceMs: Number(flags.shutdownGrace) });
  });

  withConnection(
    program
      .command('status')
      .description('progress of runs: shards done/total, samples/s, kept ratios, failures')
      .option('--run <id>', 'one run (default: the 10 newest)')
      .option('--json', 'print JSON'),
  ).action(async (flags: ConnectionFlags & { run?: string; json?: boolean }) => {
    const ctx = await open(flags);
    try {
      const report = await collectStatus(ctx, flags.run);
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
    } finally {
      await ctx.close();
    }
  });

  withConnection(
    program
      .command('dashboard')
      .description(
        'Bull Board, JSON progress and Prometheus /metrics (auth from CAPFILT_DASHBOARD_USER/PASSWORD)',
      )
      .option('--host <host>', 'bind address; anything but loopback requires auth', '127.0.0.1')
      .option('--port <port>', 'port', positiveInt, 3077),
  ).action(async (flags: ConnectionFlags & { host: string; port: number }) => {
    const dashboard = createDashboard({
      redisUrl: resolveRedisUrl(flags.redis),
      prefix: flags.prefix ?? process.env.CAPFILT_PREFIX ?? DEFAULT_PREFIX,
      host: flags.host,
      port: flags.port,
      auth: authFromEnv(),
    });
    const port = await dashboard.listen();
    process.stderr.write(
      `capfilt: dashboard on http://${flags.host}:${port}/ (Bull Board at /admin/queues, /metrics)\n`,
    );
    onShutdown([() => dashboard.close()], { graceMs: 5_000 });
  });

  const schedule = program.command('schedule').description('re-run produce on a cron pattern or interval');
  const add = withConnection(
    schedule
      .command('add <id>')
      .description('add or replace a schedule; each firing processes only new or changed shards')
      .option('--cron <pattern>', 'cron pattern, e.g. "0 3 * * *"')
      .option('--every <duration>', 'interval: 90s, 10m, 6h, 1d')
      .option('--tz <zone>', 'time zone of the cron pattern')
      .requiredOption('--input <location>', 'input: local path or s3://bucket/prefix')
      .requiredOption('--output <location>', 'output folder or s3:// prefix')
      .addOption(new Option('--mode <mode>', 'split or fused').choices(['split', 'fused']).default('split'))
      .option('--human <loc...>', 'human-annotated pairs to add unfiltered, marked human'),
  );
  addRunOptionFlags(add);
  add.action(async (id: string, flags: ConnectionFlags & Record<string, unknown>) => {
    const options = runOptionsFromFlags(flags);
    const ctx = await open(flags);
    try {
      await addSchedule(ctx, {
        id,
        ...(flags.cron ? { cron: String(flags.cron) } : {}),
        ...(flags.every ? { every: parseEvery(String(flags.every)) } : {}),
        ...(flags.tz ? { tz: String(flags.tz) } : {}),
        produce: {
          input: String(flags.input),
          output: String(flags.output),
          options,
          mode: flags.mode as RunMode,
          ...(Array.isArray(flags.human) ? { human: flags.human.map(String) } : {}),
        },
      });
      process.stdout.write(`capfilt: schedule ${id} saved (runs need a worker serving the produce stage)\n`);
    } finally {
      await ctx.close();
    }
  });
  withConnection(schedule.command('list').description('list schedules')).action(
    async (flags: ConnectionFlags) => {
      const ctx = await open(flags);
      try {
        for (const s of await listSchedules(ctx)) {
          const when = s.cron ? `cron "${s.cron}"` : `every ${s.every} ms`;
          const next = s.next ? new Date(s.next).toISOString() : '-';
          process.stdout.write(`${s.id}\t${when}\tnext ${next}\t${s.input} -> ${s.output}\n`);
        }
      } finally {
        await ctx.close();
      }
    },
  );
  withConnection(schedule.command('remove <id>').description('remove a schedule')).action(
    async (id: string, flags: ConnectionFlags) => {
      const ctx = await open(flags);
      try {
        const removed = await removeSchedule(ctx, id);
        process.stdout.write(removed ? `capfilt: schedule ${id} removed\n` : `capfilt: no schedule ${id}\n`);
        if (!removed) process.exitCode = 1;
      } finally {
        await ctx.close();
      }
    },
  );
}
