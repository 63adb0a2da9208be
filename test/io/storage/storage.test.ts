import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, SampleError, UsageError } from '../../../src/core/errors.js';
import { Storage } from '../../../src/io/storage/storage.js';
import { type S3Server, startS3 } from '../../helpers/s3.js';

describe('Storage (local)', () => {
  it('stats files and folders; the stamp of a file changes when it is rewritten', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-loc-'));
    const s = new Storage();
    expect(await s.stat(join(dir, 'none'))).toBe(null);
    expect(await s.stat(dir)).toEqual({ kind: 'folder', size: 0, stamp: '' });
    await writeFile(join(dir, 'f.txt'), 'abc');
    const first = await s.stat(join(dir, 'f.txt'));
    expect(first).toMatchObject({ kind: 'file', size: 3 });
    await new Promise((r) => setTimeout(r, 5));
    await writeFile(join(dir, 'f.txt'), 'abcd');
    expect((await s.stat(join(dir, 'f.txt')))?.stamp).not.toBe(first?.stamp);
    await expect(s.read(join(dir, 'f.txt'), { limits: { maxBytes: 3 } })).rejects.toThrow(/bytes > cap 3/);
  });

  it('removeTemps removes only the temp files a killed writer leaves', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-loc-'));
    const s = new Storage();
    await writeFile(join(dir, '.part-a.jsonl.1234-0a1b2c3d.tmp'), 'partial');
    await writeFile(join(dir, '.hidden.txt'), 'keep');
    await writeFile(join(dir, 'part-a.jsonl'), 'keep');
    await s.removeTemps(dir);
    expect((await readdir(dir)).sort()).toEqual(['.hidden.txt', 'part-a.jsonl']);
  });

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

describe('Storage (http)', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      res.end(req.url === '/big' ? 'x'.repeat(2000) : 'imagebytes');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('reads a URL under the limits of the call, with the sample key in its errors', async () => {
    const s = new Storage();
    const limits = { allowPrivateNetwork: true, maxBytes: 1000 };
    expect((await s.read(`${base}/ok`, { key: 'k', limits })).toString()).toBe('imagebytes');
    const big = await s.read(`${base}/big`, { key: 'k', limits }).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(SampleError);
    expect((big as SampleError).reason).toBe('too_large');
    expect((big as SampleError).key).toBe('k');
    // The default refuses loopback addresses, as a scraped URL must not reach the worker's network.
    const blocked = await s.read(`${base}/ok`, { key: 'k' }).catch((e: unknown) => e);
    expect((blocked as SampleError).reason).toBe('blocked_url');
  });

  it('stats a URL by its address and refuses writes, lists and deletes', async () => {
    const s = new Storage();
    expect(await s.stat(`${base}/x.jpg`)).toEqual({ kind: 'file', size: 0, stamp: `url=${base}/x.jpg` });
    await expect(s.write(`${base}/x.jpg`, 'x')).rejects.toBeInstanceOf(UsageError);
    await expect(s.list(`${base}/`)).rejects.toBeInstanceOf(UsageError);
    await expect(s.delete(`${base}/x.jpg`)).rejects.toBeInstanceOf(UsageError);
  });
});
