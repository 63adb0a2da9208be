import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore, type ShardSummary } from '../../src/queue/runs.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { uniqueName } from '../helpers/names.js';

const SHARD: ShardSummary = {
  samples: 4,
  ok: 3,
  rejected: 1,
  webKept: 2,
  syntheticKept: 1,
  syntheticTotal: 3,
};

describe('RunStore: a run is complete once its summary is written', () => {
  let redis: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    client = new Redis(redis.url, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  const create = async (store: RunStore, runId: string, shards: number) =>
    store.create({
      runId,
      input: 'in',
      output: 'out',
      mode: 'split',
      options: {},
      createdAt: Date.now(),
      shardsTotal: shards,
      shardsSkipped: 0,
    });

  it('counts each shard once and asks for the summary exactly when the last shard lands', async () => {
    const store = new RunStore(client, uniqueName('runs'));
    await create(store, 'r1', 2);
    expect(await store.markShardDone('r1', 'a', SHARD)).toBe('counted');
    expect(await store.markShardDone('r1', 'a', SHARD)).toBe('duplicate');
    expect(await store.summaryPending('r1')).toBe(false);
    expect(await store.markShardDone('r1', 'b', SHARD)).toBe('completed');
    // Counted, summary not yet written: not complete, and a redelivered job may finish it.
    expect((await store.progress('r1'))?.completedAt).toBeNull();
    expect(await store.summaryPending('r1')).toBe(true);
    expect(await store.markShardDone('r1', 'b', SHARD)).toBe('duplicate');
    await store.markCompleted('r1');
    expect(await store.summaryPending('r1')).toBe(false);
    const p = await store.progress('r1');
    expect(p?.completedAt).not.toBeNull();
    expect(p).toMatchObject({ shardsDone: 2, samples: 8 });
  });

  it('a run with a failed shard is complete without a summary', async () => {
    const store = new RunStore(client, uniqueName('runs'));
    await create(store, 'r2', 2);
    await store.markShardFailed('r2', 'a', 'input gone');
    expect(await store.markShardDone('r2', 'b', SHARD)).toBe('counted');
    expect(await store.summaryPending('r2')).toBe(false);
    expect((await store.progress('r2'))?.completedAt).not.toBeNull();
  });

  it('a shard counted done while its failure is being recorded is never both done and failed', async () => {
    const prefix = uniqueName('runs');
    const other = new Redis(redis.url, { maxRetriesPerRequest: null });
    try {
      const failing = new RunStore(client, prefix);
      const writing = new RunStore(other, prefix);
      await create(failing, 'r3', 40);
      await other.ping();
      // Two deliveries of the same shard, one failing for good as the other is counted.
      const ids = Array.from({ length: 40 }, (_, i) => `s${i}`);
      await Promise.all(
        ids.flatMap((id) => [
          failing.markShardFailed('r3', id, 'gave up'),
          writing.markShardDone('r3', id, SHARD),
        ]),
      );
      const p = await failing.progress('r3');
      expect(p).toMatchObject({ shardsDone: 40, shardsFailed: 0, samples: 40 * SHARD.samples });
    } finally {
      other.disconnect();
    }
  });
});
