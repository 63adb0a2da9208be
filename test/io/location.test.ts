import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, parentUri, parseLocation, resolveRef, Storage } from '../../src/io/location.js';
import { type S3Server, startS3 } from '../helpers/s3.js';

describe('parseLocation / resolveRef', () => {
  it('tells S3, http and local apart', () => {
    expect(parseLocation('s3://bkt/a/b.jsonl')).toEqual({ kind: 's3', bucket: 'bkt', key: 'a/b.jsonl' });
    expect(parseLocation('s3://bkt')).toEqual({ kind: 's3', bucket: 'bkt', key: '' });
    expect(parseLocation('https://x.org/i.jpg')).toEqual({ kind: 'http', url: 'https://x.org/i.jpg' });
    const local = parseLocation('rel/dir');
    expect(local.kind).toBe('local');
    expect(local.kind === 'local' && local.path.startsWith('/')).toBe(true);
  });

  it('resolves image references relative to the manifest, locally and on S3', () => {
    expect(resolveRef('img/1.jpg', 's3://b/data/m.jsonl')).toBe('s3://b/data/img/1.jpg');
    expect(resolveRef('1.jpg', 's3://b/m.jsonl')).toBe('s3://b/1.jpg');
    expect(resolveRef('img/1.jpg', '/d/m.jsonl')).toBe('/d/img/1.jpg');
    expect(resolveRef('/abs/1.jpg', '/d/m.jsonl')).toBe('/abs/1.jpg');
    expect(resolveRef('http://h/x.png', '/d/m.jsonl')).toBe('http://h/x.png');
    expect(resolveRef('s3://o/k.png', '/d/m.jsonl')).toBe('s3://o/k.png');
    expect(parentUri('s3://b/x/y/z.tar')).toBe('s3://b/x/y');
  });
});

describe('Storage (local)', () => {
  it('writes atomically, lists recursively, reads ranges, reports missing files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-loc-'));
    const s = new Storage();
    await s.write(join(dir, 'a/b.txt'), 'hello world');
    expect(await readFile(join(dir, 'a/b.txt'), 'utf8')).toBe('hello world');
    expect((await readdir(join(dir, 'a'))).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    await writeFile(join(dir, 'c.txt'), 'x');
    expect((await s.list(dir)).map((f) => f.relPath)).toEqual(['a/b.txt', 'c.txt']);
    expect((await s.readRange(join(dir, 'a/b.txt'), 6, 11)).toString()).toBe('world');
    expect(await s.exists(join(dir, 'c.txt'))).toBe(true);
    expect(await s.kind(dir)).toBe('folder');
    await s.delete(join(dir, 'c.txt'));
    expect(await s.exists(join(dir, 'c.txt'))).toBe(false);
    await expect(s.read(join(dir, 'nope.jpg'))).rejects.toBeInstanceOf(NotFoundError);
  });

  it('an aborted streaming write leaves nothing behind; a committed one appears whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-loc-'));
    const s = new Storage();
    const w = await s.createAtomicWriter(join(dir, 'out.jsonl'));
    w.stream.write('partial\n');
    await w.abort();
    expect(await readdir(dir)).toEqual([]);
    const w2 = await s.createAtomicWriter(join(dir, 'out.jsonl'));
    w2.stream.write('line1\n');
    expect(await s.exists(join(dir, 'out.jsonl'))).toBe(false);
    w2.stream.write('line2\n');
    await w2.commit();
    expect(await readFile(join(dir, 'out.jsonl'), 'utf8')).toBe('line1\nline2\n');
    expect(await readdir(dir)).toEqual(['out.jsonl']);
  });
});

describe('Storage (S3)', () => {
  let s3: S3Server;
  let storage: Storage;
  beforeAll(async () => {
    s3 = await startS3();
    storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
  });
  afterAll(async () => {
    storage?.close();
    await s3?.stop();
  });

  it('lists with paging, reads, ranges, heads, writes and deletes', async () => {
    const bucket = await s3.createBucket();
    // More keys than one ListObjectsV2 page of 1000 would be slow here; page through MaxKeys via many writes.
    for (let i = 0; i < 5; i++) {
      await s3.client.send(
        new PutObjectCommand({ Bucket: bucket, Key: `data/f${i}.txt`, Body: `file ${i}` }),
      );
    }
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'other/x.txt', Body: 'x' }));
    const listed = await storage.list(`s3://${bucket}/data`);
    expect(listed.map((f) => f.relPath)).toEqual(['f0.txt', 'f1.txt', 'f2.txt', 'f3.txt', 'f4.txt']);
    expect(listed[0].uri).toBe(`s3://${bucket}/data/f0.txt`);
    expect((await storage.read(`s3://${bucket}/data/f3.txt`)).toString()).toBe('file 3');
    expect((await storage.readRange(`s3://${bucket}/data/f3.txt`, 5, 6)).toString()).toBe('3');
    expect(await storage.size(`s3://${bucket}/data/f3.txt`)).toBe(6);
    expect(await storage.kind(`s3://${bucket}/data`)).toBe('folder');
    expect(await storage.kind(`s3://${bucket}/data/f1.txt`)).toBe('file');
    expect(await storage.kind(`s3://${bucket}/nothing`)).toBe(null);
    await expect(storage.read(`s3://${bucket}/data/missing.jpg`)).rejects.toBeInstanceOf(NotFoundError);
    await storage.write(`s3://${bucket}/out/a.json`, '{"a":1}');
    expect(await storage.exists(`s3://${bucket}/out/a.json`)).toBe(true);
    await storage.delete(`s3://${bucket}/out/a.json`);
    expect(await storage.exists(`s3://${bucket}/out/a.json`)).toBe(false);
  });

  it('streams a write through a multipart upload that appears only on commit', async () => {
    const bucket = await s3.createBucket();
    const uri = `s3://${bucket}/out/part-x.jsonl`;
    const w = await storage.createAtomicWriter(uri);
    const line = `${JSON.stringify({ pad: 'x'.repeat(1000) })}\n`;
    for (let i = 0; i < 200; i++) w.stream.write(line);
    expect(await storage.exists(uri)).toBe(false);
    await w.commit();
    expect((await storage.read(uri)).toString()).toBe(line.repeat(200));
    const aborted = await storage.createAtomicWriter(`s3://${bucket}/out/part-y.jsonl`);
    aborted.stream.write('partial');
    await aborted.abort();
    expect(await storage.exists(`s3://${bucket}/out/part-y.jsonl`)).toBe(false);
  });
});
