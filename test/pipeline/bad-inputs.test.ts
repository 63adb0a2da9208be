import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { DEFAULT_SOURCES } from '../../src/core/defaults.js';
import { runOptions } from '../../src/core/options.js';
import type { OutputRecord } from '../../src/core/types.js';
import { Filter } from '../../src/filter/filter.js';
import { sourcePolicyFor } from '../../src/io/sources.js';
import { Storage } from '../../src/io/storage/storage.js';
import { planShards } from '../../src/pipeline/plan.js';
import { processShard } from '../../src/pipeline/shard.js';
import { makeTar } from '../../tools/tar.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { type S3Server, startS3 } from '../helpers/s3.js';
import { badImageCorpus, type CorpusFile } from './corpus.js';

describe('bad inputs: every pair accounted for with the right reason', () => {
  let models: TinyModels;
  let captioner: Captioner;
  let filter: Filter;
  let s3: S3Server;
  let storage: Storage;
  let corpus: CorpusFile[];
  let server: Server;
  let port: number;

  beforeAll(async () => {
    models = await importTinyModels();
    captioner = await Captioner.load(models.captioner, { batchSize: 4 });
    filter = await Filter.load(models.filter, { batchSize: 4 });
    s3 = await startS3();
    storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
    corpus = await badImageCorpus();
    server = createServer((req, res) => {
      if (req.url === '/missing.jpg') return void res.writeHead(404).end();
      if (req.url === '/broken.jpg') return void res.writeHead(500).end();
      res.end(corpus[4].bytes);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server?.close();
    storage?.close();
    await s3?.stop();
    await captioner?.close();
    await filter?.close();
    models?.dispose();
  });

  async function run(
    input: string,
    output: string,
    shardSize = 100,
    allowPrivateNetwork = false,
  ): Promise<OutputRecord[]> {
    const options = runOptions({
      input: { shardSize },
      batchSize: 4,
      limits: { decodeTimeoutMs: 20_000, allowPrivateNetwork, fetchRetries: 1 },
      // As runLocal decides it: the input's own folder or bucket.
      sources: await sourcePolicyFor(storage, [input], DEFAULT_SOURCES),
    });
    const records: OutputRecord[] = [];
    for (const { shard } of await planShards(storage, input, { shardSize })) {
      const stats = await processShard(shard, { storage, options, captioner, filter, output });
      const data = (await storage.read(`${output}/part-${shard.id}.jsonl`)).toString('utf8');
      const lines = data
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as OutputRecord);
      expect(stats.records).toBe(lines.length);
      records.push(...lines);
    }
    return records;
  }

  it('a JSONL manifest on S3 pointing at S3 objects, some broken, one missing, plus bad rows', async () => {
    const bucket = await s3.createBucket();
    const put = (key: string, body: Buffer | string) =>
      s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    const rows: string[] = [];
    const expected: Record<string, string> = {};
    for (const f of corpus) {
      await put(`ds/img/${f.name}`, f.bytes);
      rows.push(
        JSON.stringify({ key: f.name, image: `img/${f.name}`, caption: `a picture called ${f.name}` }),
      );
      expected[f.name] = f.expect;
    }
    rows.push(JSON.stringify({ key: 'gone', image: 'img/never-uploaded.jpg', caption: 'missing object' }));
    expected.gone = 'missing_object';
    rows.push(JSON.stringify({ key: 'notext', image: 'img/cmyk.jpg' }));
    expected.notext = 'empty_text';
    expected[`${String(rows.length).padStart(9, '0')}-bad`] = 'bad_row';
    rows.push('{"key": "broken", "image": "img/cmyk.jpg", "capt');
    rows.push(
      JSON.stringify({ key: 'private', url: `http://127.0.0.1:${port}/x.jpg`, caption: 'loopback url' }),
    );
    expected.private = 'blocked_url';
    await put('ds/m.jsonl', `${rows.join('\n')}\n`);

    const out = await run(`s3://${bucket}/ds/m.jsonl`, `s3://${bucket}/out`, 6);
    expect(out).toHaveLength(rows.length);
    const got = Object.fromEntries(out.map((r) => [r.key, r.status === 'ok' ? 'ok' : r.reason]));
    expect(got).toEqual(expected);
    for (const r of out) {
      if (r.status === 'rejected') {
        expect(r.error).toBeTruthy();
        expect(r.texts).toEqual([]);
        continue;
      }
      const f = corpus.find((c) => c.name === r.key) as CorpusFile;
      expect([r.width, r.height], r.key).toEqual(f.size);
      expect(r.web?.itm).toBeGreaterThanOrEqual(0);
      expect(r.synthetic).toHaveLength(1);
    }
  });

  it('a WebDataset tar with broken members and a truncated tail, locally', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-bad-'));
    const members: { name: string; data: Buffer | string }[] = [];
    corpus.forEach((f, i) => {
      const key = String(i).padStart(6, '0');
      const ext = f.name.slice(f.name.lastIndexOf('.') + 1);
      members.push({ name: `${key}.${ext}`, data: f.bytes });
      members.push({ name: `${key}.txt`, data: i === 5 ? '' : `caption ${i}` });
    });
    const tar = await makeTar(members);
    await writeFile(join(dir, 'a.tar'), tar);
    // The cut falls inside the last image's data.
    const last = corpus[corpus.length - 1].bytes;
    await writeFile(join(dir, 'b.tar'), tar.subarray(0, tar.lastIndexOf(last) + 50));
    const out = await run(dir, join(dir, 'out'));
    const a = out.filter((r) => r.shard === 'a');
    expect(a.map((r) => (r.status === 'ok' ? 'ok' : r.reason))).toEqual(
      corpus.map((f, i) => (i === 5 ? 'empty_text' : f.expect)),
    );
    const b = out.filter((r) => r.shard === 'b');
    expect(b.map((r) => (r.status === 'ok' ? 'ok' : r.reason))).toEqual([
      ...corpus.slice(0, -1).map((f, i) => (i === 5 ? 'empty_text' : f.expect)),
      'bad_row',
    ]);
    const stats = JSON.parse(await readFile(join(dir, 'out', 'part-b.stats.json'), 'utf8'));
    expect(stats.records).toBe(corpus.length);
    expect(stats.reasons.bad_row).toBe(1);
  });

  it('http(s) image URLs: downloaded when the network is allowed, 404 and 5xx accounted for', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-http-'));
    const base = `http://127.0.0.1:${port}`;
    const rows = [
      { key: 'fine', url: `${base}/a.jpg`, caption: 'served' },
      { key: 'gone', url: `${base}/missing.jpg`, caption: '404' },
      { key: 'flaky', url: `${base}/broken.jpg`, caption: '500' },
      { key: 'bad-url', url: 'http://', caption: 'unparseable' },
    ];
    await writeFile(join(dir, 'urls.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n'));
    const out = await run(join(dir, 'urls.jsonl'), join(dir, 'out'), 100, true);
    expect(Object.fromEntries(out.map((r) => [r.key, r.status === 'ok' ? 'ok' : r.reason]))).toEqual({
      fine: 'ok',
      gone: 'missing_object',
      flaky: 'download_failed',
      'bad-url': 'download_failed',
    });
    expect(out[0].source).toBe(`${base}/a.jpg`);
  });
});
