import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InputOptions, PairRef } from '../../src/core/types.js';
import { readShard } from '../../src/io/readers/index.js';
import { derivedKey } from '../../src/io/readers/row.js';
import { Storage } from '../../src/io/storage/storage.js';
import { planShards } from '../../src/pipeline/plan.js';
import { makeTar } from '../../tools/tar.js';
import { type S3Server, startS3 } from '../helpers/s3.js';
import { jsonl, makeImage, makeParquet } from './fixtures.js';

const input: InputOptions = { shardSize: 3 };

async function readAll(storage: Storage, uri: string, opts: Partial<InputOptions> = {}): Promise<PairRef[]> {
  const o = { ...input, ...opts };
  const out: PairRef[] = [];
  for (const { shard } of await planShards(storage, uri, { shardSize: o.shardSize, columns: o })) {
    for await (const p of readShard(storage, shard, o)) out.push(p);
  }
  return out;
}

const summary = (p: PairRef) => ({
  key: p.key,
  text: p.text,
  image:
    p.image?.kind === 'location' ? p.image.uri : p.image?.kind === 'inline' ? `inline:${p.image.name}` : null,
  invalid: p.invalid?.reason ?? null,
});

describe('readers on local files', () => {
  const storage = new Storage();
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capfilt-readers-'));
  });

  it('JSONL (plain and .gz): columns with fallbacks, relative paths, bad lines and empty text', async () => {
    const body = jsonl([
      { image: 'img/a.png', caption: 'a red square' },
      { url: 'https://example.org/b.jpg', text: 'fallback columns' },
      '{"image": "img/c.png", "caption": ',
      { image: 'img/d.png', caption: '   ' },
      { caption: 'no image here' },
      [1, 2],
      { key: 'custom-key', path: '/abs/e.png', caption: 'abs path' },
    ]);
    await writeFile(join(dir, 'm.jsonl'), body);
    await mkdir(join(dir, 'gz'));
    await writeFile(join(dir, 'gz', 'm.jsonl.gz'), gzipSync(body));
    for (const uri of [join(dir, 'm.jsonl'), join(dir, 'gz', 'm.jsonl.gz')]) {
      const base = uri.endsWith('.gz') ? join(dir, 'gz') : dir;
      const pairs = await readAll(storage, uri);
      expect(pairs.map(summary)).toEqual([
        {
          key: derivedKey(0, 'img/a.png', 'a red square'),
          text: 'a red square',
          image: join(base, 'img/a.png'),
          invalid: null,
        },
        {
          key: derivedKey(1, 'https://example.org/b.jpg', 'fallback columns'),
          text: 'fallback columns',
          image: 'https://example.org/b.jpg',
          invalid: null,
        },
        { key: '000000002-bad', text: null, image: null, invalid: 'bad_row' },
        {
          key: derivedKey(3, 'img/d.png', '   '),
          text: '   ',
          image: join(base, 'img/d.png'),
          invalid: 'empty_text',
        },
        {
          key: derivedKey(4, null, 'no image here'),
          text: 'no image here',
          image: null,
          invalid: 'missing_image',
        },
        { key: '000000005-bad', text: null, image: null, invalid: 'bad_row' },
        { key: 'custom-key', text: 'abs path', image: '/abs/e.png', invalid: null },
      ]);
      expect(pairs.map((p) => [p.shardId, p.index])).toEqual([
        ['m-0-3', 0],
        ['m-0-3', 1],
        ['m-0-3', 2],
        ['m-3-6', 0],
        ['m-3-6', 1],
        ['m-3-6', 2],
        ['m-6-7', 0],
      ]);
    }
  });

  it('CSV with quotes, embedded newlines, a broken row; TSV; custom column names', async () => {
    const csv = [
      'url,caption,extra',
      '"img/a.png","a ""quoted"", comma caption",1',
      'img/b.png,"two',
      'lines",2',
      'img/c.png,too,many,fields',
      'img/d.png,,4',
      'img/e.png,plain,5',
      '',
    ].join('\n');
    await writeFile(join(dir, 'm.csv'), csv);
    const pairs = await readAll(storage, join(dir, 'm.csv'), { shardSize: 100 });
    expect(pairs.map(summary)).toEqual([
      {
        key: derivedKey(0, 'img/a.png', 'a "quoted", comma caption'),
        text: 'a "quoted", comma caption',
        image: join(dir, 'img/a.png'),
        invalid: null,
      },
      {
        key: derivedKey(1, 'img/b.png', 'two\nlines'),
        text: 'two\nlines',
        image: join(dir, 'img/b.png'),
        invalid: null,
      },
      { key: '000000002-bad', text: null, image: null, invalid: 'bad_row' },
      {
        key: derivedKey(3, 'img/d.png', null),
        text: null,
        image: join(dir, 'img/d.png'),
        invalid: 'empty_text',
      },
      {
        key: derivedKey(4, 'img/e.png', 'plain'),
        text: 'plain',
        image: join(dir, 'img/e.png'),
        invalid: null,
      },
    ]);
    expect(pairs[0].meta).toEqual({ extra: '1' });

    await writeFile(join(dir, 'n.tsv.gz'), gzipSync('pic\tdesc\nimg/a.png\tfirst\nimg/b.png\tsecond\n'));
    const tsv = await readAll(storage, join(dir, 'n.tsv.gz'), { imageColumn: 'pic', textColumn: 'desc' });
    expect(tsv.map(summary)).toEqual([
      {
        key: derivedKey(0, 'img/a.png', 'first'),
        text: 'first',
        image: join(dir, 'img/a.png'),
        invalid: null,
      },
      {
        key: derivedKey(1, 'img/b.png', 'second'),
        text: 'second',
        image: join(dir, 'img/b.png'),
        invalid: null,
      },
    ]);
  });

  it('CSV with an unclosed quote rejects that line and reads the lines after it as rows', async () => {
    await writeFile(
      join(dir, 'q.csv'),
      'image,caption\nimg/a.png,ok\nimg/b.png,"never closed\nimg/c.png,x\n',
    );
    const pairs = await readAll(storage, join(dir, 'q.csv'), { shardSize: 100 });
    expect(pairs.map((p) => p.invalid?.reason ?? 'ok')).toEqual(['ok', 'bad_row', 'ok']);
    expect(pairs[1].invalid?.message).toBe('row 1: line 3: a quoted field is never closed');
    expect(pairs[2].text).toBe('x');
  });

  it('Parquet (snappy, gzip, zstd, uncompressed; several row groups) in one shard per file', async () => {
    const n = 7;
    const cols = {
      url: Array.from({ length: n }, (_, i) => `https://example.org/${i}.jpg`),
      caption: Array.from({ length: n }, (_, i) => (i === 4 ? null : `caption ${i}`)),
    };
    await mkdir(join(dir, 'pq'));
    await writeFile(join(dir, 'pq', 'a.parquet'), makeParquet(cols, 'SNAPPY', 3));
    await writeFile(join(dir, 'pq', 'b.parquet'), makeParquet(cols, 'GZIP'));
    await writeFile(join(dir, 'pq', 'c.parquet'), makeParquet(cols, 'UNCOMPRESSED'));
    await writeFile(join(dir, 'pq', 'd.parquet'), makeParquet(cols, 'ZSTD'));
    const plan = await planShards(storage, join(dir, 'pq'), { shardSize: 3 });
    expect(plan.map((p) => p.shard.id)).toEqual(['a', 'b', 'c', 'd']);
    expect(plan.map((p) => p.pairs)).toEqual([n, n, n, n]);
    const pairs = await readAll(storage, join(dir, 'pq'));
    expect(pairs).toHaveLength(4 * n);
    for (const file of ['a', 'b', 'c', 'd']) {
      const mine = pairs.filter((p) => p.shardId === file);
      expect(mine.map((p) => p.text)).toEqual(cols.caption);
      expect(mine.map((p) => (p.image?.kind === 'location' ? p.image.uri : null))).toEqual(cols.url);
      expect(mine[4].invalid?.reason).toBe('empty_text');
      expect(mine.map((p) => p.key)).toEqual(
        Array.from({ length: n }, (_, i) => derivedKey(i, cols.url[i], cols.caption[i])),
      );
    }
  });

  it('Parquet row groups larger than a decode chunk are fetched once, all rows in order', async () => {
    const n = 5000;
    const cols = {
      url: Array.from({ length: n }, (_, i) => `https://example.org/${i}.jpg`),
      caption: Array.from({ length: n }, (_, i) => `caption ${i}`),
    };
    const file = join(dir, 'big.parquet');
    const bytes = makeParquet(cols, 'UNCOMPRESSED', n);
    await writeFile(file, bytes);
    const fetched: string[] = [];
    class Counting extends Storage {
      override async readRange(uri: string, start: number, end: number): Promise<Buffer> {
        fetched.push(`${start}-${end}`);
        return super.readRange(uri, start, end);
      }
    }
    const [planned] = await planShards(storage, file, { shardSize: 3 });
    const texts: (string | null)[] = [];
    for await (const p of readShard(new Counting(), planned.shard, input)) texts.push(p.text);
    expect(texts).toEqual(cols.caption);
    expect(fetched.length).toBeGreaterThan(1);
    expect(new Set(fetched).size).toBe(fetched.length);
  });

  it('a gzipped input read only in part (an early shard, a stopped reader) releases its source', async () => {
    const rows = Array.from({ length: 6 }, (_, i) => ({ image: `img/${i}.png`, caption: `c${i}` }));
    await mkdir(join(dir, 'early'));
    await writeFile(join(dir, 'early', 'm.jsonl.gz'), gzipSync(jsonl(rows)));
    const tar = await makeTar([
      { name: 'a.png', data: await makeImage() },
      { name: 'a.txt', data: 'A' },
      { name: 'b.png', data: await makeImage() },
      { name: 'b.txt', data: 'B' },
    ]);
    await writeFile(join(dir, 'early', 's.tar.gz'), gzipSync(tar));
    const opened: Readable[] = [];
    class Recording extends Storage {
      override async readStream(uri: string): Promise<Readable> {
        const s = await super.readStream(uri);
        opened.push(s);
        return s;
      }
    }
    const recording = new Recording();
    const [first] = await planShards(recording, join(dir, 'early', 'm.jsonl.gz'), { shardSize: 3 });
    opened.length = 0;
    const keys: string[] = [];
    for await (const p of readShard(recording, first.shard, input)) keys.push(p.key);
    expect(keys).toEqual(rows.slice(0, 3).map((r, i) => derivedKey(i, r.image, r.caption)));
    const [tarShard] = await planShards(recording, join(dir, 'early', 's.tar.gz'), { shardSize: 3 });
    for await (const p of readShard(recording, tarShard.shard, input)) {
      expect(p.key).toBe('a');
      break;
    }
    await new Promise((r) => setImmediate(r));
    expect(opened.map((s) => s.destroyed)).toEqual([true, true]);
  });

  it('WebDataset tars (img2dataset layout), a missing caption, a lone image, a truncated tar', async () => {
    const png = await makeImage('png');
    const jpg = await makeImage('jpeg');
    const tar = await makeTar([
      { name: '000000000.jpg', data: jpg },
      { name: '000000000.txt', data: 'first caption' },
      { name: '000000000.json', data: '{"url":"http://x/0.jpg","caption":"ignored"}' },
      { name: '000000001.png', data: png },
      { name: '000000001.json', data: '{"caption":"caption from json"}' },
      { name: '000000002.webp', data: await makeImage('webp') },
      { name: '000000003.txt', data: 'text without image' },
      { name: '000000004.jpg', data: jpg },
      { name: '000000004.txt', data: 'last caption' },
    ]);
    await mkdir(join(dir, 'wds'));
    await writeFile(join(dir, 'wds', '00000.tar'), tar);
    // Cut inside the data of member 000000004.jpg: everything before it survives.
    await writeFile(join(dir, 'wds', '00001.tar'), tar.subarray(0, tar.lastIndexOf(jpg) + 100));
    const plan = await planShards(storage, join(dir, 'wds'), { shardSize: 3 });
    expect(plan.map((p) => p.shard.id)).toEqual(['00000', '00001']);
    const pairs = await readAll(storage, join(dir, 'wds'));
    const whole = pairs.filter((p) => p.shardId === '00000').map(summary);
    expect(whole).toEqual([
      { key: '000000000', text: 'first caption', image: 'inline:000000000.jpg', invalid: null },
      { key: '000000001', text: 'caption from json', image: 'inline:000000001.png', invalid: null },
      { key: '000000002', text: null, image: 'inline:000000002.webp', invalid: 'empty_text' },
      { key: '000000003', text: 'text without image', image: null, invalid: 'missing_image' },
      { key: '000000004', text: 'last caption', image: 'inline:000000004.jpg', invalid: null },
    ]);
    const first = pairs.find((p) => p.key === '000000000' && p.shardId === '00000');
    expect(first?.image?.kind === 'inline' && Buffer.from(first.image.bytes).equals(jpg)).toBe(true);
    expect(first?.meta.url).toBe('http://x/0.jpg');
    const cut = pairs.filter((p) => p.shardId === '00001');
    expect(cut.map((p) => p.invalid?.reason ?? 'ok')).toEqual([
      'ok',
      'ok',
      'empty_text',
      'missing_image',
      'bad_row',
    ]);
    expect(cut[4].key).toBe('000000004');
    expect(cut[4].invalid?.message).toMatch(/truncated/);
  });

  it('a folder of images with sidecar captions, sharded by sorted listing', async () => {
    const root = join(dir, 'folder');
    await mkdir(join(root, 'sub'), { recursive: true });
    await writeFile(join(root, 'a.png'), await makeImage('png'));
    await writeFile(join(root, 'a.txt'), 'caption a');
    await writeFile(join(root, 'b.jpg'), await makeImage('jpeg'));
    await writeFile(join(root, 'b.txt'), 'caption b');
    await writeFile(join(root, 'b.json'), '{"source":"me"}');
    await writeFile(join(root, 'sub', 'c.webp'), await makeImage('webp'));
    await writeFile(join(root, 'sub', 'c.txt'), 'caption c');
    await writeFile(join(root, 'd.png'), await makeImage('png'));
    const plan = await planShards(storage, root, { shardSize: 3 });
    expect(plan.map((p) => [p.shard.id, p.pairs])).toEqual([
      ['folder-0-3', 3],
      ['folder-3-4', 1],
    ]);
    const pairs = await readAll(storage, root);
    expect(pairs.map(summary)).toEqual([
      { key: 'a', text: 'caption a', image: join(root, 'a.png'), invalid: null },
      { key: 'b', text: 'caption b', image: join(root, 'b.jpg'), invalid: null },
      { key: 'd', text: null, image: join(root, 'd.png'), invalid: 'empty_text' },
      { key: 'sub/c', text: 'caption c', image: join(root, 'sub/c.webp'), invalid: null },
    ]);
    expect(pairs[1].meta).toEqual({ source: 'me' });
  });
});

describe('readers on S3', () => {
  let s3: S3Server;
  let storage: Storage;
  let bucket: string;
  const put = (key: string, body: string | Buffer) =>
    s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  beforeAll(async () => {
    s3 = await startS3();
    storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
    bucket = await s3.createBucket();
  });
  afterAll(async () => {
    storage?.close();
    await s3?.stop();
  });

  it('JSONL, CSV, Parquet, tar and image folder under an S3 prefix', async () => {
    await put(
      'ds/m.jsonl',
      jsonl([
        { image: 'img/a.png', caption: 'A' },
        { image: 's3://other/b.png', caption: 'B' },
      ]),
    );
    await put('ds/m2.csv.gz', gzipSync('image,caption\nimg/c.png,C\n'));
    await put('ds/p.parquet', makeParquet({ image: ['img/d.png'], caption: ['D'] }));
    await put(
      'ds/s.tar',
      await makeTar([
        { name: 'k1.png', data: await makeImage() },
        { name: 'k1.txt', data: 'E' },
      ]),
    );
    const pairs = await readAll(storage, `s3://${bucket}/ds`);
    expect(pairs.map(summary)).toEqual([
      {
        key: derivedKey(0, 'img/a.png', 'A'),
        text: 'A',
        image: `s3://${bucket}/ds/img/a.png`,
        invalid: null,
      },
      { key: derivedKey(1, 's3://other/b.png', 'B'), text: 'B', image: 's3://other/b.png', invalid: null },
      {
        key: derivedKey(0, 'img/c.png', 'C'),
        text: 'C',
        image: `s3://${bucket}/ds/img/c.png`,
        invalid: null,
      },
      {
        key: derivedKey(0, 'img/d.png', 'D'),
        text: 'D',
        image: `s3://${bucket}/ds/img/d.png`,
        invalid: null,
      },
      { key: 'k1', text: 'E', image: 'inline:k1.png', invalid: null },
    ]);
    await put('imgs/x.png', await makeImage());
    await put('imgs/x.txt', 'folder caption');
    const folder = await readAll(storage, `s3://${bucket}/imgs/`);
    expect(folder.map(summary)).toEqual([
      { key: 'x', text: 'folder caption', image: `s3://${bucket}/imgs/x.png`, invalid: null },
    ]);
  });
});
