import { cp, mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import type { OutputRecord, RunOptions } from '../../src/core/types.js';
import { Storage } from '../../src/io/storage/storage.js';
import { blipAnnotations, refilter } from '../../src/pipeline/dataset.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { watchedCaptioner } from '../helpers/examples.js';
import { importTinyModels, loadTinyEngines, type TinyModels } from '../helpers/models.js';
import { readOutputRecords as records } from '../helpers/output.js';
import { type S3Server, startS3 } from '../helpers/s3.js';

const EXAMPLES = join(import.meta.dirname, '../../examples');

describe('local runner', () => {
  let models: TinyModels;
  let engines: Awaited<ReturnType<typeof loadTinyEngines>>;
  const storage = new Storage();
  let options: RunOptions;

  beforeAll(async () => {
    models = await importTinyModels();
    engines = await loadTinyEngines(models, 4);
    options = runOptions({
      input: { shardSize: 5 },
      batchSize: 4,
      decoding: { numCaptions: 2 },
      // The examples' manifest names its images as ../images/…, outside its own folder.
      sources: { localRoots: [EXAMPLES] },
    });
  });
  afterAll(async () => {
    await engines?.close();
    models?.dispose();
  });

  const base = () => ({
    captionerDir: '',
    filterDir: '',
    storage,
    options,
    progress: 'none' as const,
    engines,
    log: () => {},
  });

  it('runs the JSONL examples with human pairs: records out = pairs in, resume skips, overwrite is byte-identical', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-run-'));
    const input = join(EXAMPLES, 'jsonl/captions.jsonl');
    const human = [join(EXAMPLES, 'human/annotations.jsonl')];
    const first = await runLocal({ ...base(), input, human, output: out });
    expect(first).toMatchObject({ shards: 5, processed: 5, skipped: 0, failed: [], interrupted: false });
    const recs = await records(out);
    expect(recs).toHaveLength(16 + 2);
    expect(new Set(recs.map((r) => r.key)).size).toBe(18);
    const humans = recs.filter((r) => r.human);
    expect(humans.map((r) => r.texts)).toEqual([
      ['a thick green ring drawn on a white background'],
      ['red and black vertical stripes of equal width'],
    ]);
    for (const r of recs.filter((x) => !x.human)) {
      expect(r.status).toBe('ok');
      expect(r.synthetic).toHaveLength(2);
      expect(r.web?.text).toBeTruthy();
      // The decision is the strict threshold on each stored ITM probability.
      expect(r.web?.kept).toBe((r.web?.itm ?? 0) > 0.5);
      for (const s of r.synthetic) expect(s.kept).toBe(s.itm > 0.5);
      expect(r.texts).toEqual([
        ...(r.web?.kept ? [r.web.text] : []),
        ...r.synthetic.filter((s) => s.kept).map((s) => s.text),
      ]);
      expect(r.models).toEqual({ captioner: engines.captioner.modelId, filter: engines.filter.modelId });
      expect(r.options.threshold).toBe(0.5);
    }
    const summary = JSON.parse(await readFile(join(out, '_summary.json'), 'utf8'));
    expect(summary.records).toBe(18);
    expect(summary.kept.human).toBe(2);
    expect(summary.shards).toBe(5);
    const stats = JSON.parse(await readFile(join(out, 'part-captions-0-5.stats.json'), 'utf8'));
    expect(stats.records).toBe(5);
    expect(stats.itmHistogram.synthetic.reduce((a: number, b: number) => a + b, 0)).toBe(10);
    expect(stats.timingsMs.caption).toBeGreaterThan(0);

    const before = await readFile(join(out, 'part-captions-5-10.jsonl'));
    const again = await runLocal({ ...base(), input, human, output: out });
    expect(again).toMatchObject({ processed: 0, skipped: 5 });
    const redo = await runLocal({ ...base(), input, human, output: out, overwrite: true });
    expect(redo).toMatchObject({ processed: 5, skipped: 0 });
    // Same seed, same keys: every rerun writes the same bytes.
    const after = await readFile(join(out, 'part-captions-5-10.jsonl'));
    expect(after.equals(before)).toBe(true);

    // refilter with the original threshold reproduces every decision exactly; another threshold re-decides.
    const same = await mkdtemp(join(tmpdir(), 'capfilt-refilter-'));
    await refilter(storage, out, same, { threshold: 0.5 });
    expect(await records(same)).toEqual(recs);
    const strict = await mkdtemp(join(tmpdir(), 'capfilt-refilter-'));
    await refilter(storage, out, strict, { threshold: 0.9 });
    const strictRecs = await records(strict);
    expect(strictRecs).toHaveLength(recs.length);
    for (const r of strictRecs.filter((x) => !x.human)) {
      expect(r.options.threshold).toBe(0.9);
      for (const s of r.synthetic) expect(s.kept).toBe(s.itm > 0.9);
    }
    expect(strictRecs.reduce((a, r) => a + r.texts.length, 0)).toBeLessThan(
      recs.reduce((a, r) => a + r.texts.length, 0),
    );

    const annotations = [];
    for await (const a of blipAnnotations(storage, out)) annotations.push(a);
    expect(annotations).toHaveLength(recs.reduce((a, r) => a + r.texts.length, 0));
    expect(annotations[0]).toEqual({ image: recs[0].source, caption: recs[0].texts[0] });
  });

  it('an interrupted run leaves no partial shard; the rerun completes with each pair once', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-int-'));
    const input = join(EXAMPLES, 'jsonl/captions.jsonl');
    const ac = new AbortController();
    let batches = 0;
    const shardOptions = runOptions({ ...options, input: { shardSize: 16 }, batchSize: 4 });
    const wrapped = watchedCaptioner(engines, () => {
      if (++batches === 2) ac.abort(new Error('SIGINT'));
    });
    const r1 = await runLocal({
      ...base(),
      options: shardOptions,
      engines: wrapped,
      input,
      output: out,
      signal: ac.signal,
    });
    expect(r1.interrupted).toBe(true);
    expect(r1.summary).toBeNull();
    // No part of the interrupted shard is visible: the output holds its run record, and the
    // checkpoint of the shard's finished batch (in the work folder).
    expect((await readdir(out)).sort()).toEqual(['_capfilt-run.json', '_capfilt-work']);
    const r2 = await runLocal({ ...base(), options: shardOptions, input, output: out });
    expect(r2).toMatchObject({ processed: 1, interrupted: false });
    const recs = await records(out);
    expect(recs.map((r) => r.index)).toEqual(Array.from({ length: 16 }, (_, i) => i));
  });

  describe('on S3', () => {
    let s3: S3Server;
    let s3storage: Storage;
    beforeAll(async () => {
      s3 = await startS3();
      s3storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
    });
    afterAll(async () => {
      s3storage?.close();
      await s3?.stop();
    });

    it('reads WebDataset tars from S3 and writes gzip shards + markers + summary to S3', async () => {
      const bucket = await s3.createBucket();
      const local = await mkdtemp(join(tmpdir(), 'capfilt-wds-'));
      await cp(join(EXAMPLES, 'webdataset'), local, { recursive: true });
      for (const name of await readdir(local)) {
        await s3storage.write(`s3://${bucket}/in/${name}`, await readFile(join(local, name)));
      }
      const gz = runOptions({ ...options, output: { compression: 'gzip' } });
      const r = await runLocal({
        ...base(),
        storage: s3storage,
        options: gz,
        input: `s3://${bucket}/in`,
        output: `s3://${bucket}/out`,
      });
      expect(r).toMatchObject({ shards: 2, processed: 2, failed: [] });
      const listed = (await s3storage.list(`s3://${bucket}/out`)).map((f) => f.relPath);
      expect(listed).toEqual([
        '_capfilt-run.json',
        '_summary.json',
        'part-00000.jsonl.gz',
        'part-00000.stats.json',
        'part-00001.jsonl.gz',
        'part-00001.stats.json',
      ]);
      const lines = gunzipSync(await s3storage.read(`s3://${bucket}/out/part-00001.jsonl.gz`))
        .toString('utf8')
        .trim()
        .split('\n');
      const recs = lines.map((l) => JSON.parse(l) as OutputRecord);
      expect(recs.map((x) => x.key)).toEqual(
        Array.from({ length: 8 }, (_, i) => String(i + 8).padStart(9, '0')),
      );
      expect(recs[0].source).toBe(`s3://${bucket}/in/00001.tar#000000008.jpg`);
      expect(recs.every((x) => x.status === 'ok' && x.width === 96)).toBe(true);
      const again = await runLocal({
        ...base(),
        storage: s3storage,
        options: gz,
        input: `s3://${bucket}/in`,
        output: `s3://${bucket}/out`,
      });
      expect(again).toMatchObject({ processed: 0, skipped: 2 });
    });
  });
});
