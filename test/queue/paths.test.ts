import {
  cpSync,
  existsSync,
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

/** A data folder as a user has one: images and a manifest that names them relative to itself. */
function dataFolder(root: string, name: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'images'), { recursive: true });
  const rows = readFileSync(join(EXAMPLES, 'jsonl/captions.jsonl'), 'utf8').trim().split('\n').slice(0, 4);
  const lines = rows.map((l) => {
    const row = JSON.parse(l) as { image: string; caption: string };
    const file = row.image.split('/').pop() as string;
    cpSync(join(EXAMPLES, 'jsonl', row.image), join(dir, 'images', file));
    return JSON.stringify({ image: `images/${file}`, caption: row.caption });
  });
  writeFileSync(join(dir, 'in.jsonl'), `${lines.join('\n')}\n`);
  return dir;
}

describe('produce with local paths; workers that cannot see them say so (real redis-server, processes)', () => {
  let redis: RedisServer;
  let models: TinyModels;
  let client: Redis;
  let worker: CliProcess;
  const root = mkdtempSync(join(tmpdir(), 'capfilt-paths-'));
  const prefix = uniqueName('paths');
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

  const produce = (cwd: string, runId: string, input = 'in.jsonl', output = 'out') =>
    spawnCli(['produce', '-i', input, '-o', output, '--run', runId, '--mode', 'fused'], env(), cwd);
  const finished = (runId: string) =>
    waitFor<RunProgress>(
      `run ${runId}`,
      async () => {
        const p = await new RunStore(client, prefix).progress(runId);
        return p?.completedAt ? p : null;
      },
      90_000,
      100,
    );
  const startWorker = () => {
    // Its working folder is the repository, not the data folder produce ran in.
    worker = spawnCli(
      ['worker', '--stage', 'fused,write', '--captioner', models.captioner, '--filter', models.filter],
      env(),
    );
  };

  it('relative --input and --output are made absolute: a worker elsewhere reads and writes the right place', async () => {
    const data = dataFolder(root, 'data');
    const p = produce(data, 'rel');
    expect(await p.exited, p.output()).toBe(0);
    const run = await new RunStore(client, prefix).get('rel');
    expect(run).toMatchObject({ input: join(data, 'in.jsonl'), output: join(data, 'out') });
    startWorker();
    const progress = await finished('rel');
    expect(progress).toMatchObject({ shardsDone: 1, shardsFailed: 0, samples: 4, rejected: 0 });
    expect(readdirSync(join(data, 'out'))).toContain('part-in-0-4.jsonl');
    expect(existsSync(join(import.meta.dirname, '../../out'))).toBe(false);
  });

  it('a missing input is refused before anything is enqueued', async () => {
    const data = dataFolder(root, 'data-missing');
    const p = produce(data, 'missing', 'nope.jsonl');
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toBe(`capfilt: ${join(data, 'nope.jsonl')} does not exist\n`);
    expect(await new RunStore(client, prefix).get('missing')).toBeNull();
  });

  it('a worker that cannot see the input or the output fails the shard at once, saying so', async () => {
    // No worker takes the jobs until the paths are made invisible.
    await worker.kill('SIGKILL');
    const gone = dataFolder(root, 'data-moved');
    expect(await produce(gone, 'no-input', 'in.jsonl', join(root, 'out-no-input')).exited).toBe(0);
    // As seen from a worker on another machine: the input is not where produce saw it.
    renameSync(gone, `${gone}-elsewhere`);
    const data = dataFolder(root, 'data-no-output');
    expect(await produce(data, 'no-output').exited).toBe(0);
    // ...nor the output produce prepared (its run record).
    rmSync(join(data, 'out'), { recursive: true });
    startWorker();
    const [input, output] = await Promise.all([finished('no-input'), finished('no-output')]);
    expect(input.failures).toHaveLength(1);
    expect(input.failures[0].error).toMatch(
      new RegExp(
        `^fused: input ${join(gone, 'in.jsonl')} is not visible from this worker \\(.+\\): workers need it at the same path`,
      ),
    );
    expect(output.failures[0].error).toMatch(
      new RegExp(
        `^fused: output ${join(data, 'out')} is not visible from this worker \\(.+\\) \\(no .*_capfilt-run\\.json there\\)`,
      ),
    );
    // Nothing was written where the worker would have put it.
    expect(existsSync(join(data, 'out'))).toBe(false);
    const status = await runCli(['status', '--run', 'no-output'], env());
    expect(status).toMatch(/failed in-0-4: fused: output .* is not visible from this worker/);
  });
});
