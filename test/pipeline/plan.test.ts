import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NotFoundError, UsageError } from '../../src/core/errors.js';
import { fileKeyOf, formatOf } from '../../src/io/readers/formats.js';
import { resolveS3Options } from '../../src/io/s3.js';
import { Storage } from '../../src/io/storage/storage.js';
import { planRun, planShards, totalPairs } from '../../src/pipeline/plan.js';
import { makeTar } from '../../tools/tar.js';
import { jsonl } from '../io/fixtures.js';

describe('planShards', () => {
  const storage = new Storage();

  it('names shards from the input alone: stable across runs, one per tar, N rows per manifest shard', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-shards-'));
    await mkdir(join(dir, 'sub'));
    await writeFile(
      join(dir, 'sub', 'train part.jsonl'),
      jsonl(Array.from({ length: 7 }, (_, i) => ({ image: `${i}.jpg`, caption: 'c' }))),
    );
    await writeFile(join(dir, '00000.tar'), await makeTar([{ name: 'a.txt', data: 'x' }]));
    await writeFile(join(dir, 'notes.md'), 'not an input');
    await writeFile(join(dir, '_notes.json'), '{}');
    const a = await planShards(storage, dir, { shardSize: 3 });
    const b = await planShards(storage, dir, { shardSize: 3 });
    expect(a).toEqual(b);
    expect(
      a.map((s) => [s.shard.id, s.shard.format, s.shard.rowStart ?? null, s.shard.rowEnd ?? null, s.pairs]),
    ).toEqual([
      ['00000', 'webdataset', null, null, null],
      ['sub_train_part-0-3', 'jsonl', 0, 3, 3],
      ['sub_train_part-3-6', 'jsonl', 3, 6, 3],
      ['sub_train_part-6-7', 'jsonl', 6, 7, 1],
    ]);
    const human = await planShards(storage, join(dir, 'sub', 'train part.jsonl'), {
      shardSize: 10,
      human: true,
    });
    expect(human.map((s) => [s.shard.id, s.shard.human])).toEqual([['human-train_part-0-7', true]]);
  });

  it('refuses what it cannot read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-shards-'));
    await expect(planShards(storage, join(dir, 'nothing'), { shardSize: 3 })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await writeFile(join(dir, 'x.md'), 'hi');
    await expect(planShards(storage, dir, { shardSize: 3 })).rejects.toBeInstanceOf(UsageError);
    await expect(planShards(storage, dir, { shardSize: 0 })).rejects.toBeInstanceOf(UsageError);
  });

  it('detects formats and file keys', () => {
    expect(['a.jsonl.gz', 'b.csv', 'c.TSV', 'd.parquet', 'e.tar', 'f.tar.gz', 'g.jpg'].map(formatOf)).toEqual(
      ['jsonl', 'csv', 'tsv', 'parquet', 'webdataset', 'webdataset', null],
    );
    expect(fileKeyOf('laion/part-00001.parquet')).toBe('laion_part-00001');
  });
});

describe('S3 client options', () => {
  it('takes the endpoint from AWS_ENDPOINT_URL and defaults to path style with a custom endpoint', () => {
    const saved = process.env.AWS_ENDPOINT_URL;
    process.env.AWS_ENDPOINT_URL = 'http://minio:9000';
    try {
      expect(resolveS3Options({})).toMatchObject({ endpoint: 'http://minio:9000', forcePathStyle: true });
      expect(resolveS3Options({ endpoint: 'http://x:1', forcePathStyle: false })).toMatchObject({
        endpoint: 'http://x:1',
        forcePathStyle: false,
      });
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL;
      else process.env.AWS_ENDPOINT_URL = saved;
    }
  });
});

describe('planRun', () => {
  const storage = new Storage();
  const rows = (n: number) =>
    jsonl(Array.from({ length: n }, (_, i) => ({ image: `${i}.jpg`, caption: 'c' })));

  it('plans the input then the human inputs (marked human), with the pair total when known', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-plan-'));
    await writeFile(join(dir, 'web.jsonl'), rows(5));
    await writeFile(join(dir, 'people.jsonl'), rows(2));
    const planned = await planRun(storage, {
      input: join(dir, 'web.jsonl'),
      human: [join(dir, 'people.jsonl')],
      shardSize: 3,
    });
    expect(planned.map((s) => [s.shard.id, s.shard.human === true])).toEqual([
      ['web-0-3', false],
      ['web-3-5', false],
      ['human-people-0-2', true],
    ]);
    expect(totalPairs(planned)).toBe(7);
  });

  it('refuses two inputs that map to one shard id, with a UsageError', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-plan-'));
    await writeFile(join(dir, 'web.jsonl'), rows(2));
    const twice = planRun(storage, { input: join(dir, 'web.jsonl'), human: [], shardSize: 3 }).then(
      async (first) => {
        await writeFile(join(dir, 'human-web.jsonl'), rows(2));
        return [first, await planRun(storage, { input: dir, human: [join(dir, 'web.jsonl')], shardSize: 3 })];
      },
    );
    await expect(twice).rejects.toBeInstanceOf(UsageError);
  });
});
