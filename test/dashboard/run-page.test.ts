import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import type { RunView } from '../../src/dashboard/run-view.js';
import { createDashboard, type Dashboard } from '../../src/dashboard/server.js';
import { Storage } from '../../src/io/storage/storage.js';
import { openQueueContext, type QueueContext } from '../../src/queue/context.js';
import { DEFAULT_SHARD_JOB_POLICY } from '../../src/queue/job-options.js';
import { queueName, shardJobId } from '../../src/queue/names.js';
import { produceRun } from '../../src/queue/produce.js';
import type { ShardJobProgress } from '../../src/queue/progress.js';
import { startWorkerPool, type WorkerPool } from '../../src/queue/worker.js';
import { waitFor } from '../../tools/cli-process.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { ARTIFACTS, BROWSER_HINT, findChromium, inCi, renderPage } from '../helpers/browser.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { uniqueName } from '../helpers/names.js';
import { makeInputTar } from '../queue/data.js';

/** Pairs per input tar; the worker decodes one pair per batch, so each shard reports 3 batches. */
const PAIRS = 3;
const chromium = findChromium();
if (!chromium && !inCi()) console.warn(`skipping the run page browser check: ${BROWSER_HINT}`);

describe('run progress: job progress and logs per shard, the run page in a real browser', () => {
  let redis: RedisServer;
  let models: TinyModels;
  let ctx: QueueContext;
  let pool: WorkerPool;
  let dashboard: Dashboard;
  let events: QueueEvents;
  let base: string;
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-runpage-'));
  const workerLog: string[] = [];
  const progressEvents: ShardJobProgress[] = [];

  beforeAll(async () => {
    [redis, models] = await Promise.all([startRedis({ appendonly: false }), importTinyModels()]);
    mkdirSync(join(dir, 'in'));
    for (const t of [1, 2, 3]) writeFileSync(join(dir, 'in', `t${t}.tar`), await makeInputTar(t, PAIRS));
    ctx = await openQueueContext({ redisUrl: redis.url, prefix: uniqueName('runpage') });
    events = new QueueEvents(queueName('fused'), { connection: { url: redis.url }, prefix: ctx.prefix });
    events.on('progress', ({ data }) => progressEvents.push(data as ShardJobProgress));
    await events.waitUntilReady();
    const result = await produceRun(ctx, new Storage(), {
      input: join(dir, 'in'),
      output: join(dir, 'out'),
      options: runOptions(),
      mode: 'fused',
      runId: 'r1',
      policy: { ...DEFAULT_SHARD_JOB_POLICY, attempts: 1 },
    });
    expect(result).toMatchObject({ shards: 3, enqueued: 3 });
    // One shard's input disappears after it was planned: that shard fails, with its reason.
    rmSync(join(dir, 'in', 't3.tar'));
    pool = await startWorkerPool(ctx, {
      stages: ['fused', 'write'],
      engines: { captionerDir: models.captioner, filterDir: models.filter, intraOpThreads: 1, batchSize: 1 },
      concurrency: 1,
      log: (line) => workerLog.push(line),
    });
    await waitFor('run r1', async () => {
      const p = await ctx.runs.progress('r1');
      return p && p.shardsDone + p.shardsFailed === 3 ? p : null;
    });
    dashboard = await createDashboard({ redisUrl: redis.url, prefix: ctx.prefix, port: 0, auth: null });
    base = `http://127.0.0.1:${await dashboard.listen()}`;
  }, 120_000);

  afterAll(async () => {
    await dashboard?.close();
    await events?.close();
    await pool?.close();
    await ctx?.close();
    await redis?.stop();
    models?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports progress per batch and one line per shard, in the job log and the worker log', async () => {
    const shards = ['t1', 't2'];
    for (const shard of shards) {
      const id = shardJobId('r1', shard, 'fused');
      const progress = (await ctx.queue('fused').getJob(id))?.progress as ShardJobProgress | undefined;
      expect(progress).toMatchObject({ runId: 'r1', stage: 'fused', shard, pairsDone: PAIRS });
      const kept = progress?.kept;
      expect(kept).toBeGreaterThanOrEqual(0);
      expect(kept).toBeLessThanOrEqual(PAIRS);
      const perBatch = () => progressEvents.filter((p) => p.shard === shard).map((p) => p.pairsDone);
      // Events travel over their own connection: they may trail the job's completion a little.
      await waitFor('progress events', async () => perBatch().length >= PAIRS, 5_000);
      expect(perBatch()).toEqual([1, 2, 3]);
      const line = new RegExp(`^capfilt: fused r1/${shard}: ${PAIRS} pairs, ${kept} kept, [\\d.]+ pairs/s$`);
      const logs = await ctx.queue('fused').getJobLogs(id);
      expect(logs.logs).toHaveLength(1);
      expect(logs.logs[0]).toMatch(line);
      expect(workerLog.filter((l) => line.test(l))).toHaveLength(1);
      const write = await ctx.queue('write').getJobLogs(shardJobId('r1', shard, 'write'));
      expect(write.logs).toEqual([
        expect.stringMatching(new RegExp(`^capfilt: write r1/${shard}: ${PAIRS} pairs`)),
      ]);
    }
  });

  it('serves the run as JSON: shards, pairs/s, ETA, kept ratios, failures with reasons', async () => {
    const res = await fetch(`${base}/api/runs`);
    const [run] = (await res.json()) as RunView[];
    const progress = await ctx.runs.progress('r1');
    expect(run).toMatchObject({
      runId: 'r1',
      state: 'done with failures',
      shardsTotal: 3,
      shardsDone: 2,
      shardsFailed: 1,
      pairsDone: 2 * PAIRS,
      etaSeconds: 0,
      keptRatio: { web: progress?.webKeptRatio, synthetic: progress?.syntheticKeptRatio },
    });
    expect(run.pairsPerSecond).toBeGreaterThan(0);
    expect(run.failures).toEqual([{ shardId: 't3', error: expect.stringMatching(/^fused: .*t3\.tar/) }]);
  });

  it.skipIf(!chromium && !inCi())('draws the run page in headless chromium', async () => {
    expect(chromium, BROWSER_HINT).not.toBeNull();
    const shot = join(ARTIFACTS, 'run-page.png');
    const dom = await renderPage(chromium as string, `${base}/runs`, shot);
    const row = /<tr data-run="r1">([\s\S]*?)<\/tr>/.exec(dom)?.[1] ?? '';
    const cell = (cls: string) => new RegExp(`<td class="[^"]*\\b${cls}\\b[^"]*">(.*?)</td>`).exec(row)?.[1];
    expect(row, dom.slice(0, 2000)).not.toBe('');
    expect(cell('state')).toBe('done with failures');
    expect(cell('shards')).toMatch(/2 \/ 3/);
    expect(cell('failed')).toBe('1');
    expect(cell('pairs')).toBe(String(2 * PAIRS));
    expect(cell('eta')).toBe('0 s');
    expect(cell('kept')).toMatch(/^[\d.]+ % \/ [\d.]+ %$/);
    expect(dom).toMatch(/failed t3: fused: [^<]*t3\.tar/);
    expect(dom).toMatch(/1 runs, updated/);
    console.log(`run page screenshot: ${shot}`);
  });
});
