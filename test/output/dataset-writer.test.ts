import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetReadObjects } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardError } from '../../src/core/errors.js';
import { recordOptions, runOptions } from '../../src/core/options.js';
import type { DatasetFormat, OutputRecord, ShardRef } from '../../src/core/types.js';
import { Storage } from '../../src/io/storage/storage.js';
import { ShardWriter } from '../../src/output/shard-writer.js';
import { emptyTimings } from '../../src/output/stats.js';
import { tarMembers } from '../../tools/tar.js';
import { type S3Server, startS3 } from '../helpers/s3.js';
import { makeImage } from '../io/fixtures.js';

const options = recordOptions(runOptions());
const shard: ShardRef = { id: 'm-0-6', format: 'jsonl', uri: '/in/m.jsonl', rowStart: 0, rowEnd: 6 };

function record(i: number, key: string, over: Partial<OutputRecord> = {}): OutputRecord {
  return {
    key,
    source: `/img/${i}.jpg`,
    shard: shard.id,
    index: i,
    width: 24,
    height: 24,
    web: { text: `web ${i}`, itm: 0.5 + i / 100, itc: 0.1, kept: true },
    synthetic: [{ text: `syn ${i}`, token_ids: [1, 2], itm: 0.9, itc: 0.2, kept: true }],
    texts: [`web ${i}`, `syn ${i}`],
    status: 'ok',
    reason: null,
    error: null,
    human: false,
    meta: { similarity: 0.3 },
    models: { captioner: 'c', filter: 'f' },
    options,
    ...over,
  };
}

/** Six records: three kept images (two keys that differ only in `.`/`/`, one human), three not. */
async function shardRecords(): Promise<{ records: OutputRecord[]; images: (Buffer | undefined)[] }> {
  const records = [
    record(0, 'a.b'),
    record(1, 'a/b', { texts: ['web 1'], synthetic: [] }),
    record(2, 'rejected', { status: 'rejected', reason: 'undecodable', texts: [], web: null }),
    record(3, 'filtered', { texts: [], web: { text: 'web 3', itm: 0.01, itc: 0, kept: false } }),
    record(4, 'human', {
      human: true,
      web: { text: 'a human\ncaption', itm: null, itc: null, kept: true },
      synthetic: [],
      texts: ['a human\ncaption'],
    }),
    record(5, 'gone', { texts: [], synthetic: [] }),
  ];
  const images = [
    await makeImage('jpeg'),
    await makeImage('png'),
    undefined,
    await makeImage('webp'),
    await makeImage('webp'),
    undefined,
  ];
  return { records, images };
}

let s3: S3Server | undefined;
afterAll(async () => {
  await s3?.stop();
});

describe.each(['local', 'S3'])('ShardWriter with a dataset format (%s)', (where) => {
  let storage: Storage;
  let root: string;
  beforeAll(async () => {
    if (where === 'local') {
      storage = new Storage();
      root = await mkdtemp(join(tmpdir(), 'capfilt-dataset-writer-'));
    } else {
      s3 ??= await startS3();
      storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
      root = `s3://${await s3.createBucket()}`;
    }
  });
  afterAll(() => storage?.close());

  async function write(out: string, format: DatasetFormat) {
    const { records, images } = await shardRecords();
    const w = await ShardWriter.open(storage, out, shard, 'none', format);
    await w.append(records.slice(0, 3), images.slice(0, 3));
    await w.append(records.slice(3), images.slice(3));
    return { stats: await w.commit(emptyTimings(), new Date(), options), images };
  }

  const names = async (folder: string) => (await storage.list(folder)).map((o) => o.relPath).sort();

  it('webdataset: kept samples only, the original bytes under the extension they announce, unique names', async () => {
    const out = `${root}/wds`;
    const { stats, images } = await write(out, 'webdataset');
    expect(stats.dataset).toEqual({ format: 'webdataset', file: 'part-m-0-6.tar', samples: 3 });
    expect(await names(out)).toEqual(['part-m-0-6.jsonl', 'part-m-0-6.stats.json', 'part-m-0-6.tar']);
    const members = await tarMembers(await storage.read(`${out}/part-m-0-6.tar`));
    expect([...members.keys()]).toEqual([
      'a_b.jpg',
      'a_b.txt',
      'a_b.json',
      'a_b_1.png',
      'a_b_1.txt',
      'a_b_1.json',
      'human.webp',
      'human.txt',
      'human.json',
    ]);
    expect(members.get('a_b.jpg')?.equals(images[0] as Buffer)).toBe(true);
    expect(members.get('a_b_1.png')?.equals(images[1] as Buffer)).toBe(true);
    expect(members.get('a_b.txt')?.toString()).toBe('web 0\nsyn 0');
    // One text per line: a line break inside a text would make two.
    expect(members.get('human.txt')?.toString()).toBe('a human caption');
    const json = JSON.parse(members.get('a_b_1.json')?.toString() as string);
    expect(json).toMatchObject({
      key: 'a/b',
      texts: ['web 1'],
      web: { itm: 0.51 },
      meta: { similarity: 0.3 },
    });
  });

  it('parquet: one row per kept text with its kind and scores', async () => {
    const out = `${root}/pq`;
    const { stats } = await write(out, 'parquet');
    expect(stats.dataset).toEqual({ format: 'parquet', file: 'part-m-0-6.parquet', samples: 3 });
    const bytes = await storage.read(`${out}/part-m-0-6.parquet`);
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    const rows = (await parquetReadObjects({ file })) as Record<string, unknown>[];
    expect(rows.map((r) => [r.key, r.text, r.kind, r.itm, r.index])).toEqual([
      ['a.b', 'web 0', 'web', 0.5, 0],
      ['a.b', 'syn 0', 'synthetic', 0.9, 0],
      ['a/b', 'web 1', 'web', 0.51, 1],
      ['human', 'a human\ncaption', 'human', null, 4],
    ]);
    expect(rows[0].meta).toEqual({ similarity: 0.3 });
  });

  it('an aborted shard leaves no dataset file, no records and no marker', async () => {
    for (const format of ['webdataset', 'parquet'] as const) {
      const out = `${root}/aborted-${format}`;
      const { records, images } = await shardRecords();
      const w = await ShardWriter.open(storage, out, shard, 'none', format);
      await w.append(records, images);
      await w.abort();
      expect(await names(out), format).toEqual([]);
    }
  });

  it('a kept record without its image bytes fails the shard, naming the key', async () => {
    const out = `${root}/no-bytes`;
    const w = await ShardWriter.open(storage, out, shard, 'none', 'webdataset');
    const err = await w.append([record(0, 'k0')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShardError);
    expect((err as Error).message).toMatch(/k0: no image bytes/);
    await w.abort();
    expect(await names(out)).toEqual([]);
  });
});
