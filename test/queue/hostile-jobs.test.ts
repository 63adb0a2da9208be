import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import { Storage } from '../../src/io/storage/storage.js';
import { openQueueContext, type QueueContext } from '../../src/queue/context.js';
import { DEFAULT_SHARD_JOB_POLICY } from '../../src/queue/job-options.js';
import { shardJobId } from '../../src/queue/names.js';
import { produceRun, type ShardJobData, shardFlow } from '../../src/queue/produce.js';
import { type CliProcess, spawnCli, waitFor } from '../../tools/cli-process.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { uniqueName } from '../helpers/names.js';
import { makeInputTar } from './data.js';

/**
 * Job payloads are untrusted (issue 14): anyone who can write to Redis, or add a job from the
 * dashboard, can hand a worker any JSON. Against a real redis-server and a worker OS process,
 * each forged job below fails once, without retries, with the reason, and nothing it names is read
 * or written. Before, a shard id `../../../../../../<dir>/x` wrote x.jsonl outside the output, a
 * shard uri /etc/passwd was read as a manifest, 50,000 captions per image held a worker on one
 * job, and string data failed only with `run undefined is not recorded`. The worker is limited to
 * the run's input and output (`--read-root`, `--write-root`): a run record or produce job forged
 * to name other places is refused the same way, and nothing outside is read or written.
 */
describe('forged jobs (real redis-server, worker process)', () => {
  let redis: RedisServer;
  let models: TinyModels;
  let ctx: QueueContext;
  let worker: CliProcess;
  let runId: string;
  let shard: ShardJobData['shard'];
  const prefix = uniqueName('hostile');
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-hostile-jobs-'));
  const input = join(dir, 'in');
  const output = join(dir, 'out');
  const victim = join(dir, 'victim');
  const elsewhere = join(dir, 'elsewhere');
  const storage = new Storage();

  const failed = async (stage: string, id: string): Promise<Job> => {
    const queue = ctx.queue(stage as 'fused');
    return await waitFor(
      `${stage} job ${id} to fail`,
      async () => {
        // Fetched again once failed: a job read earlier may predate its failure.
        const failedNow = await (await queue.getJob(id))?.isFailed();
        return failedNow ? await queue.getJob(id) : null;
      },
      60_000,
      100,
    );
  };
  const forgeFlow = async (data: ShardJobData) => {
    await ctx.flows().add(shardFlow(prefix, data, 'fused', DEFAULT_SHARD_JOB_POLICY));
    return shardJobId(data.runId, data.shard.id, 'fused');
  };

  beforeAll(async () => {
    [redis, models] = await Promise.all([startRedis({ appendonly: false }), importTinyModels()]);
    ctx = await openQueueContext({ redisUrl: redis.url, prefix });
    mkdirSync(input);
    mkdirSync(victim);
    mkdirSync(elsewhere);
    writeFileSync(join(input, '00000.tar'), await makeInputTar(0, 2));
    writeFileSync(join(elsewhere, '00000.tar'), await makeInputTar(0, 2));
    const produced = await produceRun(ctx, storage, {
      input,
      output,
      options: runOptions({ batchSize: 2, decoding: { maxLength: 10, minLength: 4 } }),
      mode: 'fused',
      runId: 'legit',
    });
    runId = produced.runId;
    shard = (await ctx.queue('fused').getJob(shardJobId(runId, '00000', 'fused')))?.data.shard;
    worker = spawnCli(
      [
        ...['worker', '--stage', 'fused,write,produce', '--prefix', prefix, '--threads', '1'],
        ...['--captioner', models.captioner, '--filter', models.filter],
        ...['--read-root', input, '--write-root', output],
      ],
      { REDIS_URL: redis.url },
    );
    // The legitimate shard goes through: the worker is up and the run is sound.
    await waitFor(
      'the legitimate shard',
      async () => existsSync(join(output, 'part-00000.stats.json')),
      90_000,
    );
    expect(worker.stderr()).not.toMatch(/warning: no --/);
  }, 120_000);
  afterAll(async () => {
    await worker?.kill();
    await ctx?.close();
    await redis?.stop();
    models?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a shard id that climbs out of the output fails once and writes nothing anywhere', async () => {
    const forged = `../../../../../../${victim}/x`;
    const id = await forgeFlow({ runId, shard: { ...shard, id: forged }, fingerprint: 'f' });
    const job = await failed('fused', id);
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(/^invalid fused job .*: shard id must match/);
    await failed('write', shardJobId(runId, forged, 'write'));
    expect(readdirSync(victim)).toEqual([]);
    expect(readdirSync(output).filter((n) => !n.startsWith('part-00000') && !n.startsWith('_'))).toEqual([]);
  });

  it("a shard that points outside the run's input (/etc/passwd) fails once, unread", async () => {
    const id = await forgeFlow({
      runId,
      shard: { id: 'passwd', format: 'jsonl', uri: '/etc/passwd', rowStart: 0, rowEnd: 100 },
      fingerprint: 'f',
    });
    const job = await failed('fused', id);
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toBe(
      `invalid fused job ${id}: shard passwd reads /etc/passwd, outside the run's input ${input}`,
    );
    expect(existsSync(join(output, 'part-passwd.jsonl'))).toBe(false);
  });

  it('a run record asking for 50,000 captions per image fails its job once instead of holding the worker', async () => {
    await ctx.runs.create({
      runId: 'greedy',
      input,
      output,
      mode: 'fused',
      options: runOptions({ decoding: { numCaptions: 50_000 }, sources: { localRoots: [input] } }),
      createdAt: Date.now(),
      shardsTotal: 1,
      shardsSkipped: 0,
    });
    const id = await forgeFlow({ runId: 'greedy', shard: { ...shard }, fingerprint: 'f' });
    const job = await failed('fused', id);
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toBe(
      'invalid run record greedy: --num-captions must be an integer in [0, 64] (0: score the web text only)',
    );
  });

  it('job data that is not an object fails once, saying so', async () => {
    const job = await ctx.queue('fused').add('fused', 'just a string', { attempts: 5 });
    const done = await failed('fused', job.id as string);
    expect(done.attemptsMade).toBe(1);
    expect(done.failedReason).toBe(
      `invalid fused job ${job.id}: job data must be an object (got the string "just a string")`,
    );
    const produce = await new Queue('produce', { connection: ctx.redis, prefix }).add('produce', 42, {
      attempts: 5,
    });
    const p = await failed('produce', produce.id as string);
    expect(p.attemptsMade).toBe(1);
    expect(p.failedReason).toBe('invalid produce job: job data must be an object (got number)');
  });

  it("a run record naming an input outside the worker's --read-root fails once, unread", async () => {
    await ctx.runs.create({
      runId: 'stolen',
      input: elsewhere,
      output,
      mode: 'fused',
      options: runOptions({ batchSize: 2, sources: { localRoots: [elsewhere] } }),
      createdAt: Date.now(),
      shardsTotal: 1,
      shardsSkipped: 0,
    });
    const uri = join(elsewhere, '00000.tar');
    const id = await forgeFlow({ runId: 'stolen', shard: { ...shard, id: 'stolen', uri }, fingerprint: 'f' });
    const job = await failed('fused', id);
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toBe(
      `run stolen is outside this worker's limits: its input ${elsewhere} is not under --read-root (${input})`,
    );
    await failed('write', shardJobId('stolen', 'stolen', 'write'));
    expect(readdirSync(output).filter((n) => n.includes('stolen'))).toEqual([]);
  });

  it("a produce job naming an output outside the worker's --write-root fails once and writes nothing there", async () => {
    const data = { input, output: victim, mode: 'fused', options: runOptions(), runPrefix: 'escape' };
    const produce = await new Queue('produce', { connection: ctx.redis, prefix }).add('produce', data, {
      attempts: 5,
    });
    const job = await failed('produce', produce.id as string);
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(
      new RegExp(
        `^produce job for run escape-\\w+ is outside this worker's limits: its output ${victim} is not under --write-root \\(${output}\\)$`,
      ),
    );
    expect(readdirSync(victim)).toEqual([]);
  });
});
