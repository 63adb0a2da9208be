import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import { Storage } from '../../src/io/storage/storage.js';
import { openQueueContext, type QueueContext } from '../../src/queue/context.js';
import { DEFAULT_SHARD_JOB_POLICY } from '../../src/queue/job-options.js';
import { runKey } from '../../src/queue/names.js';
import { produceRun } from '../../src/queue/produce.js';
import { startWorkerPool, type WorkerPool } from '../../src/queue/worker.js';
import { waitFor } from '../../tools/cli-process.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { uniqueName } from '../helpers/names.js';
import { makeInputTar } from './data.js';

const SHARDS = 6;
let redis: RedisServer;
let models: TinyModels;
let ctx: QueueContext;
let pool: WorkerPool;
const dir = mkdtempSync(join(tmpdir(), 'capfilt-retention-'));

beforeAll(async () => {
  [redis, models] = await Promise.all([startRedis({ appendonly: false }), importTinyModels()]);
  mkdirSync(join(dir, 'in'));
  for (let t = 0; t < SHARDS; t++) writeFileSync(join(dir, 'in', `${t}.tar`), await makeInputTar(t + 1, 2));
  ctx = await openQueueContext({ redisUrl: redis.url, prefix: uniqueName('keep') });
});

afterAll(async () => {
  await pool?.close();
  await ctx?.close();
  await redis?.stop();
  models?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

it('trims finished jobs so Redis stays bounded, and parents still read their children', async () => {
  pool = await startWorkerPool(ctx, {
    stages: ['caption', 'filter', 'write'],
    engines: { captionerDir: models.captioner, filterDir: models.filter, intraOpThreads: 1 },
    concurrency: 1,
    log: () => {},
  });
  const policy = { ...DEFAULT_SHARD_JOB_POLICY, keepCompleted: { count: 2, age: 3600 } };
  const result = await produceRun(ctx, new Storage(), {
    input: join(dir, 'in'),
    output: join(dir, 'out'),
    options: runOptions(),
    mode: 'split',
    runId: 'r1',
    policy,
  });
  expect(result).toMatchObject({ shards: SHARDS, enqueued: SHARDS, skipped: 0 });
  const progress = await waitFor('run', async () => {
    const p = await ctx.runs.progress('r1');
    return p?.completedAt ? p : null;
  });
  expect(progress).toMatchObject({ shardsDone: SHARDS, shardsFailed: 0, samples: SHARDS * 2 });
  // The run's set of done shard ids expires once the run is complete; its counters stay.
  const ttl = await ctx.redis.ttl(`${runKey(ctx.prefix, 'r1')}:done`);
  expect(ttl).toBeGreaterThan(24 * 3600);
  expect(await ctx.redis.ttl(runKey(ctx.prefix, 'r1'))).toBe(-1);
  for (const stage of ['caption', 'filter', 'write'] as const) {
    const counts = await ctx.queue(stage).getJobCounts('completed', 'failed', 'waiting', 'active');
    expect(counts.completed, stage).toBeLessThanOrEqual(2);
    expect(counts.completed, stage).toBeGreaterThan(0);
  }
  const files = readdirSync(join(dir, 'out')).sort();
  expect(files.filter((f) => f.endsWith('.stats.json'))).toHaveLength(SHARDS);
  expect(files).toContain('_summary.json');
  // A second produce of the same output skips every complete, unchanged shard.
  const again = await produceRun(ctx, new Storage(), {
    input: join(dir, 'in'),
    output: join(dir, 'out'),
    options: runOptions(),
    mode: 'split',
    runId: 'r2',
  });
  expect(again).toMatchObject({ enqueued: 0, skipped: SHARDS });
  // Rewriting one input file makes exactly that shard new work.
  writeFileSync(join(dir, 'in', '3.tar'), await makeInputTar(9, 3));
  const changed = await produceRun(ctx, new Storage(), {
    input: join(dir, 'in'),
    output: join(dir, 'out'),
    options: runOptions(),
    mode: 'split',
    runId: 'r3',
  });
  expect(changed).toMatchObject({ enqueued: 1, skipped: SHARDS - 1 });
  const p3 = await waitFor('run r3', async () => {
    const p = await ctx.runs.progress('r3');
    return p?.completedAt ? p : null;
  });
  expect(p3).toMatchObject({ shardsDone: 1, samples: 3 });
});

it('adds human-annotated pairs unfiltered, marked human, as the local runner does', async () => {
  const human = join(import.meta.dirname, '..', '..', 'examples', 'human', 'annotations.jsonl');
  const out = join(dir, 'out-human');
  const result = await produceRun(ctx, new Storage(), {
    input: join(dir, 'in'),
    output: out,
    options: runOptions(),
    mode: 'split',
    runId: 'h1',
    human: [human],
  });
  expect(result).toMatchObject({ shards: SHARDS + 1, enqueued: SHARDS + 1 });
  await waitFor('run h1', async () => (await ctx.runs.progress('h1'))?.completedAt);
  const lines = readFileSync(join(out, 'part-human-annotations-0-2.jsonl'), 'utf8').trim().split('\n');
  const records = lines.map(
    (l) => JSON.parse(l) as { human: boolean; status: string; texts: string[]; synthetic: unknown[] },
  );
  expect(records).toHaveLength(2);
  for (const r of records) {
    expect(r).toMatchObject({ human: true, status: 'ok', synthetic: [] });
    expect(r.texts).toHaveLength(1);
  }
  const summary = JSON.parse(readFileSync(join(out, '_summary.json'), 'utf8')) as {
    human: string[];
    kept: { human: number };
  };
  expect(summary.human).toEqual([human]);
  expect(summary.kept.human).toBe(2);
});
