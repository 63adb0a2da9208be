import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import { Storage } from '../../src/io/storage/storage.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { type RunProgress, RunStore } from '../../src/queue/runs.js';
import { type CliProcess, runCli, spawnCli, waitFor } from '../../tools/cli-process.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { tarMembers } from '../../tools/tar.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { uniqueName } from '../helpers/names.js';
import { type S3Server, startS3 } from '../helpers/s3.js';
import { keyCounts, type OutputRecordLine, putTar, readS3Parts, s3Keys, tarKeys } from './data.js';

const PAIRS = 10;
const TARS = 3;
const SEED = 7;

describe('distributed CapFilt over BullMQ (real redis-server, S3 endpoint, worker processes)', () => {
  let redis: RedisServer;
  let s3: S3Server;
  let models: TinyModels;
  let bucket: string;
  let local: Map<string, OutputRecordLine[]>;
  let client: Redis;
  const procs: CliProcess[] = [];
  const localDir = mkdtempSync(join(tmpdir(), 'capfilt-local-'));

  const env = () => ({
    REDIS_URL: redis.url,
    AWS_ENDPOINT_URL: s3.endpoint,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'us-east-1',
  });
  const worker = (prefix: string, stage: string, extraEnv: NodeJS.ProcessEnv = {}) => {
    const p = spawnCli(
      [
        'worker',
        '--stage',
        stage,
        '--captioner',
        models.captioner,
        '--filter',
        models.filter,
        '--prefix',
        prefix,
        '--intra-op-threads',
        '1',
        '--lock-duration',
        '2000',
      ],
      { ...env(), ...extraEnv },
    );
    procs.push(p);
    return p;
  };
  const produce = async (
    prefix: string,
    runId: string,
    output: string,
    mode: 'split' | 'fused',
    extra: string[] = [],
  ) =>
    await runCli(
      [
        'produce',
        '--input',
        `s3://${bucket}/in`,
        '--output',
        output,
        '--prefix',
        prefix,
        '--run',
        runId,
        '--mode',
        mode,
        '--seed',
        String(SEED),
        ...extra,
      ],
      env(),
    );
  const finished = async (prefix: string, runId: string, timeoutMs = 90_000): Promise<RunProgress> =>
    await waitFor(
      `run ${runId}`,
      async () => {
        const p = await new RunStore(client, prefix).progress(runId);
        return p?.completedAt ? p : null;
      },
      timeoutMs,
      200,
    );
  const firstActive = async (queue: Queue) =>
    await waitFor(
      `an active ${queue.name} job`,
      async () => (await queue.getJobs(['active']))[0],
      120_000,
      20,
    );
  const expectSameAsLocal = (parts: Map<string, OutputRecordLine[]>) => {
    expect([...parts.keys()].sort()).toEqual([...local.keys()].sort());
    for (const [shard, records] of local) expect(parts.get(shard), shard).toEqual(records);
    const counts = keyCounts(parts);
    const expected = Array.from({ length: TARS }, (_, t) => tarKeys(t, PAIRS)).flat();
    expect([...counts.keys()].sort()).toEqual(expected.sort());
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
  };

  beforeAll(async () => {
    [redis, s3, models] = await Promise.all([startRedis(), startS3(), importTinyModels()]);
    Object.assign(process.env, { AWS_ENDPOINT_URL: s3.endpoint });
    client = new Redis(redis.url, { maxRetriesPerRequest: null });
    client.on('error', () => {});
    bucket = await s3.createBucket('capfilt-queue');
    for (let t = 0; t < TARS; t++) await putTar(s3.client, bucket, 'in', t, PAIRS);
    // The reference: local mode over the same S3 input, same seed and models.
    const storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
    const result = await runLocal({
      input: `s3://${bucket}/in`,
      output: localDir,
      captionerDir: models.captioner,
      filterDir: models.filter,
      engine: { intraOpThreads: 1 },
      options: runOptions({ decoding: { seed: SEED } }),
      storage,
      progress: 'none',
      log: () => {},
    });
    storage.close();
    expect(result.failed).toEqual([]);
    local = new Map();
    for (const f of readdirSync(localDir)) {
      const m = /^part-(.+)\.jsonl$/.exec(f);
      if (m) {
        local.set(
          m[1],
          readFileSync(join(localDir, f), 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as OutputRecordLine),
        );
      }
    }
    expect(local.size).toBe(TARS);
  });

  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
  });

  afterAll(async () => {
    client?.disconnect();
    await Promise.all([redis?.stop(), s3?.stop()]);
    models?.dispose();
    rmSync(localDir, { recursive: true, force: true });
  });

  it('split pools (caption | filter | write processes) write exactly the local records', async () => {
    const prefix = uniqueName('split');
    // Every intermediate result goes through a spill file instead of Redis.
    const spill = { CAPFILT_INLINE_RESULT_BYTES: '0' };
    worker(prefix, 'caption', spill);
    worker(prefix, 'filter', spill);
    worker(prefix, 'write', spill);
    await produce(prefix, 'r1', `s3://${bucket}/out-split`, 'split');
    const progress = await finished(prefix, 'r1');
    expect(progress).toMatchObject({
      shardsTotal: TARS,
      shardsDone: TARS,
      shardsFailed: 0,
      samples: TARS * PAIRS,
    });
    expect(progress.rejected).toBe(1);
    expectSameAsLocal(await readS3Parts(s3.client, bucket, 'out-split'));
    const keys = await s3Keys(s3.client, bucket, 'out-split');
    expect(keys).toContain('_summary.json');
    // The spill files were removed once their shard was written.
    expect(keys.filter((k) => k.startsWith('_capfilt-work/'))).toEqual([]);
    const writeQueue = new Queue('write', { connection: client, prefix });
    const writeJob = await writeQueue.getJob('r1.write.00000');
    const filterResult = Object.values((await writeJob?.getChildrenValues()) ?? {})[0] as Record<
      string,
      unknown
    >;
    expect(filterResult.spilled).toMatch(/_capfilt-work\/r1\/filter-00000\.json$/);
    expect(filterResult.captionSpill).toMatch(/caption-00000\.json$/);
    expect(keys.filter((k) => k.endsWith('.stats.json'))).toHaveLength(TARS);
    // The write job delivered again after its shard was counted and its spill files removed (as
    // when its worker dies before the job completes) completes, and the shard stays counted once.
    await writeJob?.retry('completed');
    const state = await waitFor(
      'the redelivered write job to finish',
      async () => {
        const s = await writeJob?.getState();
        return s === 'completed' || s === 'failed' || s === 'delayed' ? s : null;
      },
      30_000,
      50,
    );
    expect(state).toBe('completed');
    expect(await new RunStore(client, prefix).progress('r1')).toMatchObject({
      shardsDone: TARS,
      shardsFailed: 0,
      samples: TARS * PAIRS,
    });
    await writeQueue.close();
    // Producing the same run again enqueues nothing.
    const again = await produce(prefix, 'r1', `s3://${bucket}/out-split`, 'split');
    expect(JSON.parse(again.split('\n')[0])).toMatchObject({ enqueued: 0, skipped: TARS });
  });

  it('fused workers (caption+filter in one job) write exactly the local records', async () => {
    const prefix = uniqueName('fused');
    const w = worker(prefix, 'fused,write');
    await produce(prefix, 'r1', `s3://${bucket}/out-fused`, 'fused');
    await finished(prefix, 'r1');
    expectSameAsLocal(await readS3Parts(s3.client, bucket, 'out-fused'));
    // Its stdout: one line per shard and job, with pairs, kept and rate.
    for (const stage of ['fused', 'write'])
      expect(
        w
          .stdout()
          .match(new RegExp(`^capfilt: ${stage} r1/\\S+: \\d+ pairs, \\d+ kept, [\\d.]+ pairs/s$`, 'gm')),
      ).toHaveLength(TARS);
  });

  it('produce --output-format webdataset: the workers write each shard as a tar of its kept pairs', async () => {
    const prefix = uniqueName('wds');
    worker(prefix, 'fused,write');
    await produce(prefix, 'r1', `s3://${bucket}/out-wds`, 'fused', ['--output-format', 'webdataset']);
    await finished(prefix, 'r1');
    expectSameAsLocal(await readS3Parts(s3.client, bucket, 'out-wds'));
    const keptLocal = [...local.values()]
      .flat()
      .flatMap((r) => (r.status === 'ok' ? (r.texts as string[]).map((t) => `${r.key}\t${t}`) : []));
    const inTars: string[] = [];
    for (const shard of local.keys()) {
      const tar = await s3.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: `out-wds/part-${shard}.tar` }),
      );
      const members = await tarMembers(Buffer.from((await tar.Body?.transformToByteArray()) ?? []));
      for (const [name, bytes] of members) {
        if (!name.endsWith('.txt')) continue;
        const key = name.slice(0, -'.txt'.length);
        expect(
          [...members.keys()].some((m) => /\.(png|jpg)$/.test(m) && m.startsWith(`${key}.`)),
          key,
        ).toBe(true);
        inTars.push(
          ...bytes
            .toString('utf8')
            .split('\n')
            .filter(Boolean)
            .map((t) => `${key}\t${t}`),
        );
      }
    }
    expect(keptLocal.length).toBeGreaterThan(0);
    expect(inTars.sort()).toEqual(keptLocal.sort());
  });

  it('SIGKILL of a caption worker mid-shard: the run completes, every pair exactly once', async () => {
    const prefix = uniqueName('kill');
    const victim = worker(prefix, 'caption');
    worker(prefix, 'filter,write');
    const captionQueue = new Queue('caption', { connection: client, prefix });
    await produce(prefix, 'r1', `s3://${bucket}/out-kill`, 'split');
    const active = await firstActive(captionQueue);
    await new Promise((r) => setTimeout(r, 100));
    expect(await active.isCompleted()).toBe(false);
    expect(await victim.kill('SIGKILL')).toBe('SIGKILL');
    worker(prefix, 'caption');
    const progress = await finished(prefix, 'r1');
    expect(progress).toMatchObject({ shardsDone: TARS, shardsFailed: 0, samples: TARS * PAIRS });
    expectSameAsLocal(await readS3Parts(s3.client, bucket, 'out-kill'));
    // The killed job really was taken over: stall-recovered and started a second time.
    const recovered = await captionQueue.getJob(active.id as string);
    expect(recovered?.stalledCounter).toBeGreaterThanOrEqual(1);
    expect(recovered?.attemptsStarted).toBeGreaterThanOrEqual(2);
    expect(await recovered?.isCompleted()).toBe(true);
    await captionQueue.close();
  });

  it('SIGTERM lets a worker finish its active shard, then exit cleanly', async () => {
    const prefix = uniqueName('term');
    const first = worker(prefix, 'fused,write');
    const fusedQueue = new Queue('fused', { connection: client, prefix });
    await produce(prefix, 'r1', `s3://${bucket}/out-term`, 'fused');
    const active = await firstActive(fusedQueue);
    expect(await first.kill('SIGTERM')).toBe(0);
    expect(first.output()).toMatch(/SIGTERM, finishing active jobs/);
    // Finished by the worker that had it: not left to stall recovery.
    const job = await fusedQueue.getJob(active.id as string);
    expect(await job?.isCompleted()).toBe(true);
    expect(job?.stalledCounter).toBe(0);
    worker(prefix, 'fused,write');
    await finished(prefix, 'r1');
    expectSameAsLocal(await readS3Parts(s3.client, bucket, 'out-term'));
    await fusedQueue.close();
  });

  it('restarting redis-server (AOF) mid-run: the run completes, nothing lost or duplicated', async () => {
    const prefix = uniqueName('restart');
    worker(prefix, 'caption');
    worker(prefix, 'filter,write');
    await produce(prefix, 'r1', `s3://${bucket}/out-restart`, 'split');
    const store = new RunStore(client, prefix);
    const atKill = await waitFor(
      'a first finished shard',
      async () => {
        const p = await store.progress('r1');
        return p && p.shardsDone >= 1 ? p : null;
      },
      120_000,
      20,
    );
    expect(atKill.shardsDone).toBeLessThan(TARS);
    await redis.kill(true);
    await new Promise((r) => setTimeout(r, 1_500));
    await redis.restart();
    const progress = await finished(prefix, 'r1');
    expect(progress).toMatchObject({ shardsDone: TARS, shardsFailed: 0, samples: TARS * PAIRS });
    expectSameAsLocal(await readS3Parts(s3.client, bucket, 'out-restart'));
  });

  it('a shard whose input is gone fails at once, without retries, and is listed', async () => {
    const prefix = uniqueName('gone');
    await putTar(s3.client, bucket, 'gone-in', 0, 3);
    await putTar(s3.client, bucket, 'gone-in', 1, 3);
    await runCli(
      [
        'produce',
        '--input',
        `s3://${bucket}/gone-in`,
        '--output',
        `s3://${bucket}/gone-out`,
        '--prefix',
        prefix,
        '--run',
        'r1',
        '--mode',
        'fused',
      ],
      env(),
    );
    await s3.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'gone-in/00001.tar' }));
    worker(prefix, 'fused,write');
    const progress = await finished(prefix, 'r1');
    expect(progress.shardsDone).toBe(1);
    expect(progress.failures).toHaveLength(1);
    expect(progress.failures[0].shardId).toBe('00001');
    expect(progress.failures[0].error).toMatch(/does not exist/);
    const fused = new Queue('fused', { connection: client, prefix });
    const [failed] = await fused.getJobs(['failed']);
    expect(failed.attemptsMade).toBe(1);
    await fused.close();
    const status = await runCli(['status', '--prefix', prefix, '--run', 'r1'], env());
    expect(status).toMatch(/1\/2 done, 1 failed/);
    expect(status).toMatch(/failed 00001: fused: .*does not exist/);
  });

  it('a schedule fires, and its second run processes only the shard added since the first', async () => {
    const prefix = uniqueName('sched');
    await putTar(s3.client, bucket, 'sched-in', 0, 4);
    await putTar(s3.client, bucket, 'sched-in', 1, 4);
    worker(prefix, 'produce,fused,write');
    await runCli(
      [
        'schedule',
        'add',
        'nightly',
        '--every',
        '2s',
        '--input',
        `s3://${bucket}/sched-in`,
        '--output',
        `s3://${bucket}/sched-out`,
        '--mode',
        'fused',
        '--prefix',
        prefix,
      ],
      env(),
    );
    expect(await runCli(['schedule', 'list', '--prefix', prefix], env())).toMatch(/^nightly\tevery 2000 ms/);
    const store = new RunStore(client, prefix);
    const runsWhere = async (pred: (p: RunProgress) => boolean) => {
      const all = await Promise.all((await store.list(100)).map((id) => store.progress(id)));
      return all.filter((p): p is RunProgress => p !== null && pred(p));
    };
    const [first] = await waitFor('the first scheduled run', () =>
      runsWhere((p) => p.shardsTotal === 2 && p.completedAt !== null).then((r) => (r.length ? r : null)),
    );
    expect(first.scheduleId).toBe('nightly');
    expect(first.shardsSkipped).toBe(0);
    await putTar(s3.client, bucket, 'sched-in', 2, 4);
    const [second] = await waitFor('a run of the new shard', () =>
      runsWhere((p) => p.shardsTotal > 0 && p.createdAt > first.createdAt && p.completedAt !== null).then(
        (r) => (r.length ? r : null),
      ),
    );
    expect(second).toMatchObject({ shardsTotal: 1, shardsSkipped: 2, shardsDone: 1, samples: 4 });
    // Firings with nothing new left no run behind; only these two runs processed anything.
    expect(await store.list(100)).toHaveLength(2);
    const keys = await s3Keys(s3.client, bucket, 'sched-out');
    expect(keys.filter((k) => k.endsWith('.stats.json'))).toEqual([
      'part-00000.stats.json',
      'part-00001.stats.json',
      'part-00002.stats.json',
    ]);
    expect(await runCli(['schedule', 'remove', 'nightly', '--prefix', prefix], env())).toMatch(/removed/);
    expect(await runCli(['schedule', 'list', '--prefix', prefix], env())).toBe('');
  });
});
