import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveBind } from '../../src/dashboard/bind.js';
import { createDashboard, type Dashboard, REDIS_DEADLINE_MS } from '../../src/dashboard/server.js';
import { redactRedisUrl, resolveRedisUrl } from '../../src/queue/connection.js';
import { runKey, runsIndexKey } from '../../src/queue/names.js';
import { spawnCli } from '../../tools/cli-process.js';
import { freePort, type RedisServer, startRedis } from '../../tools/redis-server.js';
import { basicAuth, rawRequest } from '../helpers/http.js';
import { uniqueName } from '../helpers/names.js';

const auth = { user: 'ops', password: 'pw' };
const ADD = '/admin/queues/api/queues/caption/add';
const PAUSE = '/admin/queues/api/queues/caption/pause';
const jobBody = JSON.stringify({ name: 'evil', data: {}, options: {} });

/** A dashboard of its own (own prefix) on a free loopback port. */
async function serve(redisUrl: string, options: Partial<Parameters<typeof createDashboard>[0]> = {}) {
  const prefix = options.prefix ?? uniqueName('dashsec');
  const logged: string[] = [];
  const dashboard = await createDashboard({
    redisUrl,
    host: '127.0.0.1',
    port: 0,
    auth: null,
    log: (line) => logged.push(line),
    ...options,
    prefix,
  });
  const port = await dashboard.listen();
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  const caption = new Queue('caption', { connection: client, prefix });
  return { dashboard, port, caption, client, logged };
}

describe('dashboard on loopback', () => {
  let redis: RedisServer;
  const opened: { dashboard: Dashboard; caption: Queue; client: Redis }[] = [];
  const open = async (options: Partial<Parameters<typeof createDashboard>[0]> = {}) => {
    const d = await serve(redis.url, options);
    opened.push(d);
    return d;
  };

  beforeAll(async () => {
    redis = await startRedis({ appendonly: false });
  });
  afterAll(async () => {
    for (const d of opened) {
      await d.dashboard.close();
      await d.caption.close();
      d.client.disconnect();
    }
    await redis?.stop();
  });

  it('answers only Host names a DNS rebinding cannot use', async () => {
    const { port } = await open({ allowedHosts: ['dash.internal'] });
    const get = (host: string) => rawRequest(port, { path: '/api/progress', headers: { host } });
    expect((await get('evil.test')).status).toBe(421);
    expect((await get(`127.evil.test:${port}`)).status).toBe(421);
    expect((await get(`attacker.example:${port}`)).body).toMatch(/not served here/);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'dash.internal'])
      expect((await get(host)).status, host).toBe(200);
  });

  it('refuses queue actions without credentials, unless anonymous actions are allowed', async () => {
    const locked = await open();
    await locked.caption.add('caption', { shard: 'a' }, { jobId: 'j1' });
    const q = '/admin/queues/api/queues/caption';
    const actions: [string, string][] = [
      ['PUT', PAUSE],
      ['POST', ADD],
      ['PUT', `${q}/retry/failed`],
      ['PUT', `${q}/clean/completed`],
      ['PUT', `${q}/j1/retry`],
      ['PUT', `${q}/j1/clean`],
      ['PUT', `${q}/empty`],
    ];
    for (const [method, path] of actions) {
      const res = await rawRequest(locked.port, {
        method,
        path,
        headers: { 'content-type': 'application/json' },
        body: method === 'POST' ? jobBody : '{}',
      });
      expect(res.status, path).toBe(403);
      expect(res.body).toMatch(/queue actions need credentials/);
    }
    expect(await locked.caption.isPaused()).toBe(false);
    expect(await locked.caption.getJobCounts('waiting')).toEqual({ waiting: 1 });
    // Reading still works, and Bull Board hides the buttons it would refuse.
    const queues = await rawRequest(locked.port, { path: '/admin/queues/api/queues' });
    expect(queues.status).toBe(200);
    expect(JSON.parse(queues.body).queues[0].readOnlyMode).toBe(true);

    const allowed = await open({ anonymousActions: true });
    await allowed.caption.add('caption', { shard: 'a' }, { jobId: 'j1' });
    expect((await rawRequest(allowed.port, { method: 'PUT', path: PAUSE })).status).toBe(200);
    expect(await allowed.caption.isPaused()).toBe(true);
    expect((await rawRequest(allowed.port, { method: 'PUT', path: `${q}/j1/clean` })).status).toBe(204);
    expect(await allowed.caption.getJob('j1')).toBeUndefined();
  });

  it('changes nothing on a cross-site request, even one carrying the credentials', async () => {
    const { port, caption } = await open({ auth });
    const authorization = basicAuth(auth.user, auth.password);
    const attempts: { method: string; path: string; headers: Record<string, string> }[] = [
      // A cross-site form or no-cors fetch: text/plain POST, the browser adds cached credentials.
      { method: 'POST', path: ADD, headers: { 'content-type': 'text/plain', origin: 'http://evil.test' } },
      { method: 'POST', path: ADD, headers: { 'content-type': 'text/plain' } },
      { method: 'POST', path: ADD, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      { method: 'POST', path: ADD, headers: { 'content-type': 'application/json', origin: 'null' } },
      {
        method: 'POST',
        path: ADD,
        headers: { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' },
      },
      { method: 'PUT', path: PAUSE, headers: { origin: 'http://evil.test' } },
    ];
    for (const a of attempts) {
      const res = await rawRequest(port, { ...a, headers: { ...a.headers, authorization }, body: jobBody });
      expect([403, 415], JSON.stringify(a)).toContain(res.status);
    }
    expect(await caption.count()).toBe(0);
    expect(await caption.isPaused()).toBe(false);
    // The board's own requests (same origin, JSON) still work.
    const own = await rawRequest(port, {
      method: 'POST',
      path: ADD,
      headers: {
        authorization,
        'content-type': 'application/json',
        origin: `http://127.0.0.1:${port}`,
        'sec-fetch-site': 'same-origin',
      },
      body: jobBody,
    });
    expect(own.status).toBe(200);
    expect(await caption.count()).toBe(1);
    // Behind a TLS proxy the page's origin is https while this server sees http: still its own.
    const proxied = await rawRequest(port, {
      method: 'PUT',
      path: PAUSE,
      headers: { authorization, origin: `https://127.0.0.1:${port}` },
    });
    expect(proxied.status).toBe(200);
    expect(await caption.isPaused()).toBe(true);
  });

  it('judges --host by what it resolves to, before the auth check', async () => {
    const rebound = async () => ['203.0.113.7'];
    expect((await resolveBind('127.evil.test', rebound)).loopback).toBe(false);
    await expect(
      createDashboard({
        redisUrl: redis.url,
        prefix: 'x',
        host: '127.evil.test',
        auth: null,
        lookup: rebound,
      }),
    ).rejects.toThrow(/refusing to bind the dashboard to 127\.evil\.test \(203\.0\.113\.7\) without auth/);
    // The real command, with the real resolver: never served without credentials.
    const port = String(await freePort());
    const cli = spawnCli(['dashboard', '--host', '127.evil.test', '--port', port, '--redis', redis.url], {
      CAPFILT_DASHBOARD_USER: '',
      CAPFILT_DASHBOARD_PASSWORD: '',
    });
    expect(await cli.exited).toBe(2);
    expect(cli.output()).toMatch(/cannot resolve|refusing to bind/);
    expect(cli.output()).not.toMatch(/dashboard on/);
  });

  it('answers within a few seconds while Redis is down', async () => {
    const down = await startRedis({ appendonly: false });
    const logged: string[] = [];
    const dashboard = await createDashboard({
      redisUrl: down.url,
      prefix: uniqueName('down'),
      host: '127.0.0.1',
      port: 0,
      auth: null,
      log: (line) => logged.push(line),
    });
    try {
      const port = await dashboard.listen();
      await down.kill(true);
      const t0 = Date.now();
      const paths = ['/api/progress', '/metrics', '/admin/queues/api/queues'];
      const answers = await Promise.all(paths.map((path) => rawRequest(port, { path })));
      expect(Date.now() - t0).toBeLessThan(REDIS_DEADLINE_MS + 2_000);
      expect(answers.map((a) => a.status)).toEqual([503, 503, 503]);
      expect(logged.join('\n')).toMatch(/ECONNREFUSED/);
    } finally {
      await dashboard.close();
      await down.stop();
    }
  });

  it('never puts a secret into error text', async () => {
    for (const url of [
      'redis://:pa/ss@127.0.0.1:6379',
      'redis://user:6379/secret@host',
      'redis://:a@b/c@h:1',
    ]) {
      let message = '';
      try {
        resolveRedisUrl(url);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, url).toMatch(/invalid Redis URL: redis:\/\/\*\*\*@/);
      expect(message).not.toMatch(/pa\/ss|ss@|secret|a@b|b\/c/);
      expect(redactRedisUrl(url)).not.toMatch(/pa\/ss|secret|b\/c/);
    }
    const cli = spawnCli(['dashboard', '--redis', 'redis://:top/secret@127.0.0.1:1']);
    expect(await cli.exited).toBe(2);
    expect(cli.output()).toMatch(/invalid Redis URL/);
    expect(cli.output()).not.toMatch(/secret/);
    // A failing route tells the client nothing, the operator the cause.
    const prefix = uniqueName('bad');
    const { port, logged, client } = await open({ prefix });
    await client.hset(runKey(prefix, 'bad'), {
      runId: 'bad',
      options: '{',
      createdAt: '1',
      shardsTotal: '1',
    });
    await client.zadd(runsIndexKey(prefix), 1, 'bad');
    const res = await rawRequest(port, { path: '/api/runs/bad' });
    expect(res.status).toBe(500);
    expect(res.body).toBe('{"error":"internal error (see the dashboard log)"}');
    expect(logged.join('\n')).toMatch(/GET \/api\/runs\/bad: .*JSON/);
  });
});
