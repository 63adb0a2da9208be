import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunProgress, RunStore } from '../../src/queue/runs.js';
import { type CliProcess, runCli, spawnCli, waitFor } from '../../tools/cli-process.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { uniqueName } from '../helpers/names.js';

const EXAMPLES = join(import.meta.dirname, '../../examples');

/** Two manifests of 4 pairs each (two shards), their images beside them. */
function dataFolder(dir: string): void {
  mkdirSync(join(dir, 'images'), { recursive: true });
  const rows = readFileSync(join(EXAMPLES, 'jsonl/captions.jsonl'), 'utf8').trim().split('\n');
  const lines = rows.slice(0, 8).map((l) => {
    const row = JSON.parse(l) as { image: string; caption: string };
    const file = row.image.split('/').pop() as string;
    cpSync(join(EXAMPLES, 'jsonl', row.image), join(dir, 'images', file));
    return JSON.stringify({ image: `../images/${file}`, caption: row.caption });
  });
  mkdirSync(join(dir, 'in'));
  writeFileSync(join(dir, 'in/a.jsonl'), `${lines.slice(0, 4).join('\n')}\n`);
  writeFileSync(join(dir, 'in/b.jsonl'), `${lines.slice(4).join('\n')}\n`);
}

describe('a failed distributed run is retried with its stored options (real redis-server, worker process)', () => {
  let redis: RedisServer;
  let models: TinyModels;
  let client: Redis;
  let worker: CliProcess | undefined;
  const root = mkdtempSync(join(tmpdir(), 'capfilt-retry-'));
  const prefix = uniqueName('retry');
  const env = () => ({ REDIS_URL: redis.url, CAPFILT_PREFIX: prefix });

  beforeAll(async () => {
    [redis, models] = await Promise.all([startRedis({ appendonly: false }), importTinyModels()]);
    client = new Redis(redis.url, { maxRetriesPerRequest: null });
    client.on('error', () => {});
  });
  afterAll(async () => {
    await worker?.kill('SIGKILL');
    client?.disconnect();
    await redis?.stop();
    models?.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  const settled = (runId: string, done: number) =>
    waitFor<RunProgress>(
      `run ${runId}`,
      async () => {
        const p = await new RunStore(client, prefix).progress(runId);
        return p?.completedAt && p.shardsDone === done ? p : null;
      },
      120_000,
      100,
    );

  it('produce on a failed run says what became of each shard; retry re-runs the failed one; the run completes', async () => {
    const data = join(root, 'data');
    dataFolder(data);
    const output = join(data, 'out');
    const produce = [
      ...['produce', '-i', join(data, 'in'), '-o', output, '--run', 'r1', '--mode', 'fused'],
      ...['--threshold', '0.2', '--allow-root', data],
    ];
    expect(await runCli(produce, env())).toContain('run r1: 2 of 2 shards enqueued');
    // As a worker on a machine without b.jsonl would see it: that shard fails for good.
    renameSync(join(data, 'in/b.jsonl'), join(data, 'b.jsonl.away'));
    worker = spawnCli(
      ['worker', '--stage', 'fused,write', '--captioner', models.captioner, '--filter', models.filter],
      env(),
    );
    const failed = await settled('r1', 1);
    expect(failed.failures.map((f) => f.shardId)).toEqual(['b-0-4']);
    expect(readdirSync(output)).not.toContain('_summary.json');

    // The cause fixed (the file is back where workers look), the same produce again adds nothing
    // and says so (it used to print "2 of 2 shards enqueued" and run nothing).
    renameSync(join(data, 'b.jsonl.away'), join(data, 'in/b.jsonl'));
    const again = await runCli(produce, env());
    expect(again).toContain(
      'capfilt: run r1 exists: 0 of its 2 shards enqueued now (never enqueued before), 1 complete, 0 still queued or running, 1 failed (capfilt retry r1 re-runs them)',
    );

    expect(await runCli(['retry', 'r1'], env())).toBe(
      "capfilt: run r1: 1 failed shards enqueued again with the run's options\n",
    );
    const progress = await settled('r1', 2);
    expect(progress).toMatchObject({ shardsFailed: 0, samples: 8, failures: [] });
    const summary = JSON.parse(readFileSync(join(output, '_summary.json'), 'utf8'));
    expect(summary.records).toBe(8);
    // The stored options, not defaults: the retried shard was decided at --threshold 0.2 too.
    const b = readFileSync(join(output, 'part-b-0-4.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(b).toHaveLength(4);
    expect(b.every((r) => r.options.threshold === 0.2)).toBe(true);
    expect(await runCli(['retry', 'r1'], env())).toBe(
      'capfilt: run r1 has no failed shards (2 of 2 done): nothing to retry\n',
    );
  });

  it('retry of a run that does not exist: one line, exit 2', async () => {
    const p = spawnCli(['retry', 'nope'], env());
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toBe(`capfilt: run nope (prefix ${prefix}) does not exist\n`);
  });
});
