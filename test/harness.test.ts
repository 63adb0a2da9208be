import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../tools/redis-server.js';
import { uniqueName } from './helpers/names.js';
import { type S3Server, startS3 } from './helpers/s3.js';

describe('test harness: real redis-server and a real S3 endpoint', () => {
  let redis: RedisServer;
  let s3: S3Server;
  beforeAll(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
  });
  afterAll(async () => {
    await Promise.all([redis?.stop(), s3?.stop()]);
  });

  it('round-trips a BullMQ job', async () => {
    const name = uniqueName('harness');
    const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
    const queue = new Queue(name, { connection });
    const events = new QueueEvents(name, { connection });
    const worker = new Worker(name, async (job) => (job.data as { n: number }).n * 2, { connection });
    try {
      await events.waitUntilReady();
      const job = await queue.add('double', { n: 21 });
      expect(await job.waitUntilFinished(events, 10_000)).toBe(42);
    } finally {
      await worker.close();
      await events.close();
      await queue.close();
    }
  });

  it('puts, lists with paging and streams back S3 objects', async () => {
    const bucket = await s3.createBucket();
    const keys = Array.from({ length: 7 }, (_, i) => `shards/${String(i).padStart(3, '0')}.txt`);
    for (const key of keys) {
      await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `body of ${key}` }));
    }
    const listed: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await s3.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: 'shards/', MaxKeys: 3, ContinuationToken: token }),
      );
      pages += 1;
      for (const obj of page.Contents ?? []) listed.push(obj.Key!);
      token = page.NextContinuationToken;
    } while (token);
    expect(pages).toBe(3);
    expect(listed).toEqual(keys);
    const got = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: keys[4] }));
    expect(await got.Body!.transformToString()).toBe(`body of ${keys[4]}`);
  });

  it('restarts redis-server with its data (AOF)', async () => {
    const client = new Redis(redis.url, { maxRetriesPerRequest: null });
    client.on('error', () => {});
    await client.set('harness-key', 'kept');
    await redis.kill(true);
    await redis.restart();
    expect(await client.get('harness-key')).toBe('kept');
    client.disconnect();
  });
});
