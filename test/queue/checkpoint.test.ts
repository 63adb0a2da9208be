import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutputRecord } from '../../src/core/types.js';
import { checkpointFolder } from '../../src/output/checkpoint.js';
import { type RunProgress, RunStore } from '../../src/queue/runs.js';
import { type CliProcess, runCli, spawnCli, waitFor } from '../../tools/cli-process.js';
import { type RedisServer, startRedis } from '../../tools/redis-server.js';
import { EXAMPLES, examplePairLines } from '../helpers/examples.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { uniqueName } from '../helpers/names.js';

const PAIRS = 40;
const SHARD = 'pairs-0-40';

describe('a fused worker killed mid-shard: the next one resumes from the checkpoint (real redis-server, processes)', () => {
  let redis: RedisServer;
  let models: TinyModels;
  let client: Redis;
  const procs: CliProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-worker-checkpoint-'));
  const prefix = uniqueName('checkpoint');
  const env = () => ({ REDIS_URL: redis.url, CAPFILT_PREFIX: prefix });

  beforeAll(async () => {
    [redis, models] = await Promise.all([startRedis({ appendonly: false }), importTinyModels()]);
    client = new Redis(redis.url, { maxRetriesPerRequest: null });
    client.on('error', () => {});
    writeFileSync(join(dir, 'pairs.jsonl'), `${examplePairLines(PAIRS).join('\n')}\n`);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    client?.disconnect();
    await redis?.stop();
    models?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  const worker = (stages = 'fused,write') => {
    const p = spawnCli(
      [
        ...['worker', '--stage', stages, '--captioner', models.captioner, '--filter', models.filter],
        ...['--threads', '1', '--lock-duration', '2000'],
      ],
      env(),
    );
    procs.push(p);
    return p;
  };
  const pieces = (out: string, stage = '') => {
    const folder = join(checkpointFolder(out, SHARD), stage);
    return existsSync(folder)
      ? readdirSync(folder)
          .filter((n) => n.endsWith('.jsonl'))
          .sort()
      : [];
  };

  const produce = (runId: string, out: string, mode: 'fused' | 'split') =>
    runCli(
      [
        ...['produce', '-i', join(dir, 'pairs.jsonl'), '-o', out, '--run', runId, '--mode', mode],
        ...['--batch-size', '2', '--shard-size', String(PAIRS), '--allow-root', EXAMPLES],
      ],
      env(),
    );
  const completed = (runId: string) =>
    waitFor<RunProgress>(
      `run ${runId}`,
      async () => {
        const p = await new RunStore(client, prefix).progress(runId);
        return p?.completedAt ? p : null;
      },
      120_000,
      100,
    );
  /** The shard's records, checked to hold every pair once, in order. */
  const shardRecords = (out: string) => {
    const records = readFileSync(join(out, `part-${SHARD}.jsonl`), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as OutputRecord);
    expect(records.map((r) => r.key)).toEqual(Array.from({ length: PAIRS }, (_, i) => `pair-${i}`));
    return records;
  };

  it('the resumed shard keeps the checkpointed records (not recomputed) and has every pair once', async () => {
    const out = join(dir, 'out');
    await produce('r1', out, 'fused');
    const first = worker();
    await waitFor('three checkpointed batches', async () => pieces(out).length >= 3, 120_000, 20);
    expect(await first.kill('SIGKILL')).toBe('SIGKILL');
    // Marks the first checkpointed record: a resumed shard copies it, a recomputed one would not.
    const firstPiece = join(checkpointFolder(out, SHARD), pieces(out)[0]);
    const [header, record, ...rest] = readFileSync(firstPiece, 'utf8').split('\n');
    const marked = { ...(JSON.parse(record) as OutputRecord), meta: { from: 'checkpoint' } };
    writeFileSync(firstPiece, [header, JSON.stringify(marked), ...rest].join('\n'));

    worker();
    const progress = await completed('r1');
    expect(progress).toMatchObject({ shardsDone: 1, shardsFailed: 0, samples: PAIRS });
    const records = shardRecords(out);
    expect(records.find((r) => r.key === marked.key)?.meta).toEqual({ from: 'checkpoint' });
    expect(pieces(out)).toEqual([]);
  });

  it('split mode: a caption worker killed mid-shard; the next caption job resumes from its checkpoint', async () => {
    const out = join(dir, 'out-split');
    await produce('r2', out, 'split');
    const first = worker('caption');
    await waitFor('three captioned batches', async () => pieces(out, 'caption').length >= 3, 120_000, 20);
    expect(await first.kill('SIGKILL')).toBe('SIGKILL');
    const firstPiece = join(checkpointFolder(out, SHARD), 'caption', pieces(out, 'caption')[0]);
    const [header, pair, ...rest] = readFileSync(firstPiece, 'utf8').split('\n');
    const captioned = JSON.parse(pair) as { captions: { text: string }[] };
    captioned.captions[0].text = 'a caption from the checkpoint';
    writeFileSync(firstPiece, [header, JSON.stringify(captioned), ...rest].join('\n'));

    worker('caption,filter,write');
    const progress = await completed('r2');
    expect(progress).toMatchObject({ shardsDone: 1, shardsFailed: 0, samples: PAIRS });
    const records = shardRecords(out);
    expect(records[0].synthetic[0].text).toBe('a caption from the checkpoint');
    expect(pieces(out, 'caption')).toEqual([]);
    expect(pieces(out, 'filter')).toEqual([]);
  });
});
