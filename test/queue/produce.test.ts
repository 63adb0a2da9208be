import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import { Storage } from '../../src/io/storage/storage.js';
import { openQueueContext, type QueueContext } from '../../src/queue/context.js';
import { firingStamp } from '../../src/queue/processors.js';
import { produceRun } from '../../src/queue/produce.js';
import { addSchedule, listSchedules, parseEvery, removeSchedule } from '../../src/queue/schedule.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { uniqueName } from '../helpers/names.js';
import { makeInputTar } from './data.js';

describe('produce', () => {
  let redis: RedisServer;
  let ctx: QueueContext;
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-produce-'));
  const storage = new Storage();
  const req = (extra: { runId: string; scheduleId?: string }) => ({
    input: join(dir, 'in'),
    output: join(dir, 'out'),
    options: runOptions(),
    mode: 'split' as const,
    ...extra,
  });

  beforeAll(async () => {
    redis = await startRedis({ appendonly: false });
    ctx = await openQueueContext({ redisUrl: redis.url, prefix: uniqueName('produce') });
    mkdirSync(join(dir, 'in'));
    for (let t = 0; t < 2; t++) writeFileSync(join(dir, 'in', `${t}.tar`), await makeInputTar(t + 1, 2));
  });
  afterAll(async () => {
    await ctx?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses bad options before recording or enqueueing anything', async () => {
    const bad = { ...req({ runId: 'bad' }), options: runOptions({ decoding: { topP: 2 } }) };
    await expect(produceRun(ctx, storage, bad)).rejects.toThrow('--top-p must be in (0, 1]');
    expect(await ctx.runs.get('bad')).toBe(null);
    expect(await ctx.queue('write').count()).toBe(0);
  });

  it('enqueues one flow per shard, and enqueueing the same run again adds nothing', async () => {
    expect(await produceRun(ctx, storage, req({ runId: 'a' }))).toMatchObject({ shards: 2, enqueued: 2 });
    await produceRun(ctx, storage, req({ runId: 'a' }));
    expect(await ctx.queue('caption').getJobCounts('waiting')).toEqual({ waiting: 2 });
    expect(await ctx.queue('write').getJobCounts('waiting-children')).toEqual({ 'waiting-children': 2 });
    const run = await ctx.runs.get('a');
    expect(run).toMatchObject({ shardsTotal: 2, shardsSkipped: 0, mode: 'split' });
    // The run carries its options, so workers apply exactly these, with the source policy decided
    // for it: its input's own folder.
    expect(run?.options).toEqual({
      ...runOptions(),
      sources: { localRoots: [join(dir, 'in')], s3Buckets: [] },
    });
    const job = await ctx.queue('caption').getJob('a.caption.0');
    expect(job?.data).toMatchObject({ runId: 'a', shard: { id: '0', format: 'webdataset' } });
    expect(JSON.stringify(job?.data).length).toBeLessThan(1_000);
  });

  it('skips a scheduled firing while the schedule’s previous run is unfinished', async () => {
    expect(await produceRun(ctx, storage, req({ runId: 's-1', scheduleId: 's' }))).toMatchObject({
      enqueued: 2,
    });
    const busy = await produceRun(ctx, storage, req({ runId: 's-2', scheduleId: 's' }));
    expect(busy).toMatchObject({ busy: true, runId: 's-1', enqueued: 0 });
    expect(await ctx.runs.get('s-2')).toBeNull();
  });

  it('names each scheduled firing by its due time, stable across retries', () => {
    const a = firingStamp({ id: 'repeat:nightly:1795000000000', timestamp: 1 });
    const b = firingStamp({ id: 'repeat:nightly:1795000002000', timestamp: 1 });
    expect(a).not.toBe(b);
    expect(a).toBe(firingStamp({ id: 'repeat:nightly:1795000000000', timestamp: 999 }));
    expect(a).toMatch(/^[0-9TZ]+$/);
    expect(firingStamp({ id: 'manual', timestamp: 1795000000000 })).toBe(a);
  });

  it('schedules: durations, exactly one of --cron/--every, list and remove', async () => {
    expect(parseEvery('90s')).toBe(90_000);
    expect(parseEvery('6h')).toBe(6 * 3_600_000);
    expect(parseEvery('1500')).toBe(1_500);
    expect(() => parseEvery('soon')).toThrow(/duration/);
    expect(() => parseEvery('10ms')).toThrow(/at least 1s/);
    const produce = {
      input: join(dir, 'in'),
      output: join(dir, 'out'),
      options: runOptions(),
      mode: 'fused' as const,
    };
    await expect(addSchedule(ctx, { id: 'x', produce })).rejects.toThrow(/exactly one/);
    await expect(addSchedule(ctx, { id: 'x', cron: '0 3 * * *', every: 1000, produce })).rejects.toThrow(
      /exactly one/,
    );
    await expect(addSchedule(ctx, { id: 'bad:id', every: 1000, produce })).rejects.toThrow(/schedule id/);
    await addSchedule(ctx, { id: 'nightly', cron: '0 3 * * *', produce });
    await addSchedule(ctx, { id: 'nightly', cron: '0 4 * * *', produce });
    const list = await listSchedules(ctx);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: 'nightly', cron: '0 4 * * *', input: join(dir, 'in') });
    expect(await removeSchedule(ctx, 'nightly')).toBe(true);
    expect(await listSchedules(ctx)).toEqual([]);
  });
});
