import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authFromEnv } from '../../src/dashboard/auth.js';
import { assertBindAllowed, resolveBind } from '../../src/dashboard/bind.js';
import { createMetrics } from '../../src/dashboard/metrics.js';
import { createDashboard, type Dashboard } from '../../src/dashboard/server.js';
import { runKey, runsIndexKey } from '../../src/queue/names.js';
import { RunStore } from '../../src/queue/runs.js';
import { spawnCli, waitFor } from '../../tools/cli-process.js';
import { freePort, type RedisServer, startRedis } from '../../tools/redis-server.js';
import { rawRequest } from '../helpers/http.js';
import { uniqueName } from '../helpers/names.js';

const auth = { user: 'ops', password: 's3cret:with:colons' };
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('dashboard', () => {
  let redis: RedisServer;
  let dashboard: Dashboard;
  let base: string;
  const prefix = uniqueName('dash');

  beforeAll(async () => {
    redis = await startRedis({ appendonly: false });
    const client = new Redis(redis.url);
    const q = new Queue('caption', { connection: client, prefix });
    await q.add('caption', { shard: 'a' }, { jobId: 'run1.caption.a' });
    await q.close();
    await new RunStore(client, prefix).create({
      runId: 'run1',
      input: 's3://in/x',
      output: 's3://out/y',
      mode: 'split',
      options: { seed: 1 },
      createdAt: Date.now() - 1000,
      shardsTotal: 2,
      shardsSkipped: 0,
    });
    await new RunStore(client, prefix).markShardDone('run1', 'shard-0', {
      samples: 10,
      ok: 9,
      rejected: 1,
      webKept: 4,
      syntheticKept: 6,
      syntheticTotal: 9,
    });
    client.disconnect();
    dashboard = await createDashboard({ redisUrl: redis.url, prefix, host: '127.0.0.1', port: 0, auth });
    base = `http://127.0.0.1:${await dashboard.listen()}`;
  });
  afterAll(async () => {
    await dashboard?.close();
    await redis?.stop();
  });

  it('refuses requests without or with wrong credentials', async () => {
    for (const path of ['/admin/queues', '/metrics', '/api/progress', '/admin/queues/api/queues']) {
      const none = await fetch(base + path, { redirect: 'manual' });
      expect(none.status, path).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Basic/);
      const wrong = await fetch(base + path, { headers: { authorization: basic('ops', 'nope') } });
      expect(wrong.status, path).toBe(401);
    }
  });

  it('serves Bull Board over every capfilt queue', async () => {
    const headers = { authorization: basic(auth.user, auth.password) };
    const page = await fetch(`${base}/admin/queues`, { headers });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const api = await fetch(`${base}/admin/queues/api/queues`, { headers });
    expect(api.status).toBe(200);
    const body = (await api.json()) as { queues: { name: string; counts: Record<string, number> }[] };
    const names = body.queues.map((q) => q.name).sort();
    expect(names).toEqual(['caption', 'filter', 'fused', 'produce', 'write']);
    expect(body.queues.find((q) => q.name === 'caption')?.counts.waiting).toBe(1);
  });

  it('serves Prometheus metrics and JSON progress', async () => {
    const headers = { authorization: basic(auth.user, auth.password) };
    const metrics = await fetch(`${base}/metrics`, { headers });
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(text).toContain('capfilt_queue_jobs{queue="caption",state="waiting"} 1');
    expect(text).toContain('capfilt_run_shards{run="run1",kind="done"} 1');
    expect(text).toContain('capfilt_run_samples{run="run1",kind="ok"} 9');
    const progress = await fetch(`${base}/api/progress`, { headers });
    const json = (await progress.json()) as {
      runs: { runId: string; shardsDone: number; webKeptRatio: number }[];
    };
    expect(json.runs).toHaveLength(1);
    expect(json.runs[0].shardsDone).toBe(1);
    expect(json.runs[0].webKeptRatio).toBeCloseTo(4 / 9);
  });

  it('metrics recover after a scrape that failed', async () => {
    const client = new Redis(redis.url);
    const own = uniqueName('metrics');
    const registry = createMetrics([], new RunStore(client, own));
    try {
      // A run record that cannot be read (its options are not JSON) fails the scrape...
      await client.hset(runKey(own, 'bad'), { runId: 'bad', options: '{', createdAt: '1', shardsTotal: '1' });
      await client.zadd(runsIndexKey(own), 1, 'bad');
      await expect(registry.metrics()).rejects.toThrow(/JSON/);
      // ...and once it is repaired the next scrape succeeds.
      await client.hset(runKey(own, 'bad'), 'options', '{}');
      expect(await registry.metrics()).toContain('capfilt_run_shards{run="bad",kind="total"} 1');
    } finally {
      client.disconnect();
    }
  });

  it('refuses to bind beyond loopback without auth', async () => {
    const any = await resolveBind('0.0.0.0');
    expect(() => assertBindAllowed(any, null)).toThrow(/refusing to bind/);
    expect(() => assertBindAllowed(any, auth)).not.toThrow();
    const loopback = await resolveBind('127.0.0.1');
    expect(() => assertBindAllowed(loopback, null)).not.toThrow();
    expect((await resolveBind('localhost')).loopback).toBe(true);
    await expect(
      createDashboard({ redisUrl: redis.url, prefix, host: '0.0.0.0', auth: null }),
    ).rejects.toThrow(/refusing to bind/);
    expect(authFromEnv({})).toBeNull();
    expect(() => authFromEnv({ CAPFILT_DASHBOARD_USER: 'a' })).toThrow(/both/);
  });

  it('capfilt dashboard refuses a public bind without credentials, and serves with them', async () => {
    const env = { CAPFILT_DASHBOARD_USER: '', CAPFILT_DASHBOARD_PASSWORD: '' };
    const refused = spawnCli(
      ['dashboard', '--host', '0.0.0.0', '--redis', redis.url, '--prefix', prefix],
      env,
    );
    expect(await refused.exited).toBe(2);
    expect(refused.output()).toMatch(/refusing to bind the dashboard to 0\.0\.0\.0/);
    const port = await freePort();
    const served = spawnCli(
      [
        'dashboard',
        '--host',
        '0.0.0.0',
        '--port',
        String(port),
        '--allowed-hosts',
        'dash.internal, other.internal',
        '--redis',
        redis.url,
        '--prefix',
        prefix,
      ],
      {
        CAPFILT_DASHBOARD_USER: auth.user,
        CAPFILT_DASHBOARD_PASSWORD: auth.password,
      },
    );
    try {
      await waitFor('dashboard', async () => served.output().includes('dashboard on'), 60_000);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(401);
      const ok = await fetch(`http://127.0.0.1:${port}/metrics`, {
        headers: { authorization: basic(auth.user, auth.password) },
      });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('capfilt_queue_jobs');
      // --allowed-hosts reaches the Host check: listed names pass it (then need auth), others do not.
      const byName = (host: string) => rawRequest(port, { path: '/metrics', headers: { host } });
      expect((await byName('other.internal')).status).toBe(401);
      expect((await byName('evil.test')).status).toBe(421);
    } finally {
      expect(await served.kill('SIGTERM')).toBe(0);
    }
  });
});
