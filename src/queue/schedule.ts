import { UsageError } from '../core/errors.js';
import { validateRunOptions } from '../core/validate.js';
import type { QueueContext } from './context.js';
import { sanitizeId } from './names.js';
import type { ProduceJobData } from './produce.js';

export interface ScheduleRequest {
  id: string;
  /** A cron pattern (seconds field optional), or `every` milliseconds. */
  cron?: string;
  every?: number;
  tz?: string;
  produce: ProduceJobData;
}

export interface ScheduleInfo {
  id: string;
  cron: string | null;
  every: number | null;
  next: number | null;
  input: string | null;
  output: string | null;
}

/** `90s`, `10m`, `6h`, `1d` or plain milliseconds. */
export function parseEvery(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--every takes a duration like 90s, 10m, 6h or 1d (got ${text})`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms'] ?? 1;
  const ms = Math.round(Number(m[1]) * unit);
  if (ms < 1_000) throw new UsageError('--every must be at least 1s');
  return ms;
}

/**
 * A BullMQ job scheduler on the produce queue: each firing enqueues a produce job, which a
 * `worker --stage produce` turns into a run; shards unchanged since they were written are skipped,
 * so a re-run only processes what is new or changed. Upserting an existing id replaces it.
 */
export async function addSchedule(ctx: QueueContext, req: ScheduleRequest): Promise<void> {
  if (sanitizeId(req.id) !== req.id)
    throw new UsageError(`schedule id must match [A-Za-z0-9._-]+ (got ${req.id})`);
  if ((req.cron === undefined) === (req.every === undefined)) {
    throw new UsageError('give exactly one of --cron and --every');
  }
  validateRunOptions(req.produce.options);
  const repeat =
    req.cron !== undefined ? { pattern: req.cron, ...(req.tz ? { tz: req.tz } : {}) } : { every: req.every };
  await ctx.queue('produce').upsertJobScheduler(req.id, repeat, {
    name: 'produce',
    data: { ...req.produce, scheduleId: req.id, runPrefix: req.produce.runPrefix ?? req.id },
    opts: {
      attempts: 3,
      backoff: { type: 'exponential', delay: 10_000 },
      removeOnComplete: { count: 100 },
      removeOnFail: { count: 100 },
    },
  });
}

export async function listSchedules(ctx: QueueContext): Promise<ScheduleInfo[]> {
  const all = await ctx.queue('produce').getJobSchedulers(0, -1, true);
  return all.map((s) => {
    const data = s.template?.data as Partial<ProduceJobData> | undefined;
    return {
      id: s.key,
      cron: s.pattern ?? null,
      every: s.every ? Number(s.every) : null,
      next: s.next ?? null,
      input: data?.input ?? null,
      output: data?.output ?? null,
    };
  });
}

export async function removeSchedule(ctx: QueueContext, id: string): Promise<boolean> {
  return await ctx.queue('produce').removeJobScheduler(id);
}
