import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  checkEvictionPolicy,
  createRedis,
  reconnectDelay,
  redactRedisUrl,
  resolveRedisUrl,
} from '../../src/queue/connection.js';
import { openQueueContext } from '../../src/queue/context.js';
import { sanitizeId, shardJobId } from '../../src/queue/names.js';
import { spawnCli } from '../../tools/cli-process.js';
import { freePort, type RedisServer, startRedis } from '../../tools/redis-server.js';
import { uniqueName } from '../helpers/names.js';

describe('redis url', () => {
  it('prefers --redis, then REDIS_URL, then loopback', () => {
    expect(resolveRedisUrl('redis://a:1', { REDIS_URL: 'redis://b:2' })).toBe('redis://a:1');
    expect(resolveRedisUrl(undefined, { REDIS_URL: 'rediss://b:2' })).toBe('rediss://b:2');
    expect(resolveRedisUrl(undefined, {})).toBe('redis://127.0.0.1:6379');
    expect(() => resolveRedisUrl('http://x', {})).toThrow(/redis:\/\//);
  });

  it('parses user, password, db, tls and query parameters', () => {
    const options = (url: string) => {
      const redis = createRedis(url, { role: 'client', lazyConnect: true });
      redis.disconnect();
      return redis.options;
    };
    const o = options('rediss://user:p%40ss@cache.example.com:6380/2?family=6');
    expect(o).toMatchObject({
      host: 'cache.example.com',
      port: 6380,
      username: 'user',
      password: 'p@ss',
      db: 2,
      family: 6,
    });
    expect(o.tls).toEqual({ servername: 'cache.example.com' });
    const plain = options('redis://:pw@10.0.0.1');
    expect(plain).toMatchObject({ host: '10.0.0.1', port: 6379, password: 'pw' });
    expect(plain.tls).toBeUndefined();
    expect(redactRedisUrl('redis://:hunter2@h:1')).not.toContain('hunter2');
  });

  it('backs off exponentially, capped', () => {
    expect(reconnectDelay(1)).toBeLessThan(reconnectDelay(3));
    expect(reconnectDelay(50)).toBe(5_000);
  });
});

describe('job ids', () => {
  it('contain no colon, are injective and never integers', () => {
    const a = shardJobId('run-1', 'data/a:b.tar', 'caption');
    const b = shardJobId('run-1', 'data/a_b.tar', 'caption');
    expect(a).not.toContain(':');
    expect(a).not.toBe(b);
    expect(shardJobId('run-1', 'x', 'caption')).not.toBe(shardJobId('run-1', 'x', 'filter'));
    expect(Number.isInteger(Number(sanitizeId('12')))).toBe(true);
    expect(shardJobId('1', '2', 'write')).toMatch(/[a-z]/);
    const long = sanitizeId('s3://bucket/'.padEnd(400, 'x'));
    expect(long.length).toBeLessThanOrEqual(160);
    expect(long).not.toBe(sanitizeId('s3://bucket/'.padEnd(399, 'x')));
  });
});

describe('redis server checks', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis({ appendonly: false });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('accepts noeviction and warns about any other policy', async () => {
    const redis = createRedis(server.url, { role: 'client' });
    try {
      expect(await checkEvictionPolicy(redis)).toEqual({ ok: true, policy: 'noeviction' });
      await redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
      const check = await checkEvictionPolicy(redis);
      expect(check.ok).toBe(false);
      expect(check.policy).toBe('allkeys-lru');
      expect('warning' in check && check.warning).toMatch(/noeviction/);
    } finally {
      redis.disconnect();
    }
  });

  it('tolerates CONFIG being disabled', async () => {
    const port = await freePort();
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--rename-command', 'CONFIG', '""'],
      { stdio: 'ignore' },
    );
    try {
      const redis = new Redis({ port, retryStrategy: (n) => (n > 50 ? null : 50) });
      redis.on('error', () => {});
      await redis.ping();
      const check = await checkEvictionPolicy(redis);
      expect(check.ok).toBeNull();
      expect('warning' in check && check.warning).toMatch(/could not read/);
      redis.disconnect();
    } finally {
      proc.kill('SIGKILL');
    }
  });

  it('reconnects after a server restart (worker role keeps commands queued)', async () => {
    const aof = await startRedis();
    const redis = createRedis(aof.url, { role: 'worker', onError: () => {} });
    try {
      await redis.set('k', 'v');
      await aof.kill();
      const pending = redis.get('k');
      await new Promise((r) => setTimeout(r, 300));
      await aof.restart();
      expect(await pending).toBe('v');
    } finally {
      redis.disconnect();
      await aof.stop();
    }
  });

  it('a queue context rides out a Redis restart with one line of its own, never a stack trace', async () => {
    const aof = await startRedis();
    const ctx = await openQueueContext({ redisUrl: aof.url, prefix: uniqueName('quiet'), role: 'worker' });
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await ctx.queue('write').getJobCounts();
      ctx.flows();
      await aof.kill();
      const counts = ctx.queue('write').getJobCounts();
      await new Promise((r) => setTimeout(r, 500));
      await aof.restart();
      expect(await counts).toMatchObject({ waiting: 0 });
      expect(consoleError).not.toHaveBeenCalled();
      const lines = stderr.mock.calls.map(([chunk]) => String(chunk));
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(line).toMatch(/^capfilt: redis redis:\/\/127\.0\.0\.1:\d+\/?: .*\n$/);
    } finally {
      consoleError.mockRestore();
      stderr.mockRestore();
      await ctx.close();
      await aof.stop();
    }
  });

  it('a worker that cannot start (no model for its stage) exits instead of hanging on its connection', async () => {
    const p = spawnCli([
      'worker',
      '--stage',
      'caption',
      '--shutdown-grace',
      '1000',
      '--redis',
      server.url,
      '--prefix',
      uniqueName('w'),
    ]);
    const timer = setTimeout(() => void p.kill('SIGKILL'), 20_000);
    try {
      expect(await p.exited).toBe(2);
      expect(p.output()).toMatch(/need --captioner/);
    } finally {
      clearTimeout(timer);
    }
  });
});
