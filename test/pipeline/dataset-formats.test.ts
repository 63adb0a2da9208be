import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetReadObjects } from 'hyparquet';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { UsageError } from '../../src/core/errors.js';
import { runOptions } from '../../src/core/options.js';
import type { DatasetFormat, OutputRecord, SourcePolicy } from '../../src/core/types.js';
import { Filter } from '../../src/filter/filter.js';
import { Storage } from '../../src/io/storage/storage.js';
import { completedShards, readMarker } from '../../src/output/completion.js';
import { readRecords } from '../../src/output/read.js';
import { exportBlip, exportDataset } from '../../src/pipeline/dataset.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { writeShardOutput } from '../../src/pipeline/shard.js';
import { tarMembers } from '../../tools/tar.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { type S3Server, startS3 } from '../helpers/s3.js';

const EXAMPLES = join(import.meta.dirname, '../../examples');

/** (key, text) of every kept text: what the JSONL records say the clean dataset holds. */
const keptPairs = (records: OutputRecord[]) =>
  records.flatMap((r) => (r.status === 'ok' ? r.texts.map((t) => `${r.key}\t${t}`) : [])).sort();

describe.each(['local', 'S3'])('clean dataset formats (%s)', (where) => {
  let models: TinyModels;
  let engines: { captioner: Captioner; filter: Filter };
  let s3: S3Server | undefined;
  let storage: Storage;
  let root: string;

  beforeAll(async () => {
    models = await importTinyModels();
    engines = {
      captioner: await Captioner.load(models.captioner, { batchSize: 4 }),
      filter: await Filter.load(models.filter, { batchSize: 4 }),
    };
    if (where === 'local') {
      storage = new Storage();
      root = await mkdtemp(join(tmpdir(), 'capfilt-formats-'));
    } else {
      s3 = await startS3();
      storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
      root = `s3://${await s3.createBucket()}`;
    }
    for (const name of await readdir(join(EXAMPLES, 'webdataset'))) {
      await storage.write(`${root}/wds/${name}`, await readFile(join(EXAMPLES, 'webdataset', name)));
    }
    for (const name of await readdir(join(EXAMPLES, 'images'))) {
      await storage.write(`${root}/data/images/${name}`, await readFile(join(EXAMPLES, 'images', name)));
    }
    // The examples' manifest with its images beside it (S3 keys have no `..`).
    const manifest = await readFile(join(EXAMPLES, 'jsonl/captions.jsonl'), 'utf8');
    await storage.write(`${root}/data/captions.jsonl`, manifest.replaceAll('../images/', 'images/'));
  });
  afterAll(async () => {
    await engines?.captioner.close();
    await engines?.filter.close();
    storage?.close();
    await s3?.stop();
    models?.dispose();
  });

  const options = (format: DatasetFormat, sources: Partial<SourcePolicy> = {}) =>
    runOptions({
      input: { shardSize: 8 },
      batchSize: 4,
      decoding: { numCaptions: 2, maxLength: 12, minLength: 6 },
      output: { format },
      sources,
    });

  async function run(input: string, output: string, format: DatasetFormat, sources?: SourcePolicy) {
    const result = await runLocal({
      input,
      output,
      captionerDir: '',
      filterDir: '',
      storage,
      options: options(format, sources),
      progress: 'none',
      engines,
      log: () => {},
    });
    expect(result.failed).toEqual([]);
    return result;
  }

  async function recordsOf(output: string): Promise<OutputRecord[]> {
    const out: OutputRecord[] = [];
    for (const s of await completedShards(storage, output)) {
      for await (const r of readRecords(storage, s.data)) out.push(r);
    }
    return out;
  }

  it('run --output-format webdataset: tars of the original image bytes that tar readers read, the same pairs as the JSONL', async () => {
    const out = `${root}/out-wds`;
    await run(`${root}/wds`, out, 'webdataset');
    const records = await recordsOf(out);
    expect(records).toHaveLength(16);
    const pairs = keptPairs(records);
    expect(pairs.length).toBeGreaterThan(0);
    expect(records.some((r) => r.texts.length === 0)).toBe(true);

    const fromTars: string[] = [];
    for (const shard of ['00000', '00001']) {
      const tar = await storage.read(`${out}/part-${shard}.tar`);
      const members = await tarMembers(tar);
      const input = await tarMembers(await readFile(join(EXAMPLES, 'webdataset', `${shard}.tar`)));
      const stems = [...new Set([...members.keys()].map((n) => n.slice(0, n.indexOf('.'))))];
      for (const stem of stems) {
        expect([`${stem}.jpg`, `${stem}.txt`, `${stem}.json`].every((n) => members.has(n))).toBe(true);
        // Re-packed, never re-encoded: the image is the input's member, byte for byte.
        expect(members.get(`${stem}.jpg`)?.equals(input.get(`${stem}.jpg`) as Buffer), stem).toBe(true);
        const json = JSON.parse(members.get(`${stem}.json`)?.toString('utf8') as string);
        const texts = members.get(`${stem}.txt`)?.toString('utf8').split('\n') as string[];
        expect(json.texts).toEqual(texts);
        expect(json.web.itm).toBeTypeOf('number');
        expect(json.meta.correct).toBeTypeOf('boolean');
        fromTars.push(...texts.map((t) => `${json.key}\t${t}`));
      }
      const stats = await readMarker(storage, `${out}/part-${shard}.stats.json`);
      expect(stats?.dataset).toEqual({
        format: 'webdataset',
        file: `part-${shard}.tar`,
        samples: stems.length,
      });
      if (where === 'local') {
        // GNU tar lists and extracts the same members.
        const listed = execFileSync('tar', ['-tf', `${out}/part-${shard}.tar`], { encoding: 'utf8' });
        expect(listed.trim().split('\n')).toEqual([...members.keys()]);
        const dir = await mkdtemp(join(tmpdir(), 'capfilt-untar-'));
        execFileSync('tar', ['-xf', `${out}/part-${shard}.tar`, '-C', dir]);
        for (const [name, bytes] of members)
          expect((await readFile(join(dir, name))).equals(bytes)).toBe(true);
      }
    }
    expect(fromTars.sort()).toEqual(pairs);

    // The same tars from the records alone: the queue's write job and `export` read the images again.
    const exported = `${root}/exported-wds`;
    expect(await exportDataset(storage, out, exported, 'webdataset')).toMatchObject({ shards: 2 });
    const requeued = `${root}/requeued`;
    for (const s of await completedShards(storage, out)) {
      const recs: OutputRecord[] = [];
      for await (const r of readRecords(storage, s.data)) recs.push(r);
      await writeShardOutput(s.stats.shard, [recs], {
        storage,
        options: options('webdataset'),
        output: requeued,
      });
    }
    for (const shard of ['00000', '00001']) {
      const written = await storage.read(`${out}/part-${shard}.tar`);
      expect((await storage.read(`${exported}/part-${shard}.tar`)).equals(written)).toBe(true);
      expect((await storage.read(`${requeued}/part-${shard}.tar`)).equals(written)).toBe(true);
    }
  });

  it('run --output-format parquet: rows per kept text that hyparquet and DuckDB read, the same pairs as the JSONL', async () => {
    const out = `${root}/out-parquet`;
    await run(`${root}/data/captions.jsonl`, out, 'parquet');
    const records = await recordsOf(out);
    expect(records).toHaveLength(16);
    expect(keptPairs(records).length).toBeGreaterThan(0);
    const rows: Record<string, unknown>[] = [];
    const files: string[] = [];
    for (const shard of ['captions-0-8', 'captions-8-16']) {
      const bytes = await storage.read(`${out}/part-${shard}.parquet`);
      const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      rows.push(...((await parquetReadObjects({ file })) as Record<string, unknown>[]));
      const local = join(await mkdtemp(join(tmpdir(), 'capfilt-pq-')), `part-${shard}.parquet`);
      await writeFile(local, bytes);
      files.push(local);
    }
    expect(rows.map((r) => `${r.key}\t${r.text}`).sort()).toEqual(keptPairs(records));
    for (const row of rows) {
      const r = records.find((x) => x.key === row.key) as OutputRecord;
      expect(row.source).toBe(r.source);
      const scored = row.kind === 'web' ? r.web : r.synthetic.find((s) => s.text === row.text);
      expect(row.itm).toBe(scored?.itm);
      expect(row.meta).toEqual(r.meta);
    }
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const read = await conn.runAndReadAll(
      `select key, text, kind, itm from read_parquet([${files.map((f) => `'${f}'`).join(', ')}]) order by key, text`,
    );
    const duck = read.getRowObjectsJS() as { key: string; text: string; kind: string; itm: number }[];
    expect(duck.map((r) => `${r.key}\t${r.text}`).sort()).toEqual(keptPairs(records));
    expect(duck.every((r) => r.kind === 'web' || r.kind === 'synthetic')).toBe(true);
    conn.closeSync();
    db.closeSync();

    const exported = `${root}/exported-parquet`;
    await exportDataset(storage, out, exported, 'parquet');
    for (const shard of ['captions-0-8', 'captions-8-16']) {
      const a = await storage.read(`${out}/part-${shard}.parquet`);
      expect((await storage.read(`${exported}/part-${shard}.parquet`)).equals(a)).toBe(true);
    }

    // Tars of a manifest's image files: export reads them again from beside the manifest (the
    // run's own source), and from nowhere its run could not read.
    const tars = `${root}/exported-manifest-wds`;
    await exportDataset(storage, out, tars, 'webdataset');
    const fromTars: string[] = [];
    for (const shard of ['captions-0-8', 'captions-8-16']) {
      const members = await tarMembers(await storage.read(`${tars}/part-${shard}.tar`));
      for (const [name, bytes] of members) {
        if (!name.endsWith('.json')) continue;
        const json = JSON.parse(bytes.toString('utf8'));
        const image = members.get(name.replace(/\.json$/, '.jpg')) as Buffer;
        expect(
          image.equals(await readFile(join(EXAMPLES, 'images', json.source.split('/').pop()))),
          name,
        ).toBe(true);
        fromTars.push(...json.texts.map((t: string) => `${json.key}\t${t}`));
      }
    }
    expect(fromTars.sort()).toEqual(keptPairs(records));
  });

  it('export reads images only where their run could: its recorded sources, or what --allow-root/--allow-bucket add', async () => {
    // A manifest in a place of its own naming images under `root` by absolute location.
    const elsewhere =
      where === 'local'
        ? await mkdtemp(join(tmpdir(), 'capfilt-elsewhere-'))
        : `s3://${await s3?.createBucket()}`;
    const names = ['0000_red_circle.jpg', '0001_blue_square.jpg'];
    const rows = names.map((n, i) =>
      JSON.stringify({ image: `${root}/data/images/${n}`, caption: `picture ${i}` }),
    );
    await storage.write(`${elsewhere}/list.jsonl`, `${rows.join('\n')}\n`);
    const allow: SourcePolicy =
      where === 'local'
        ? { localRoots: [root], s3Buckets: [] }
        : { localRoots: [], s3Buckets: [root.slice('s3://'.length)] };
    const out = `${elsewhere}/out`;
    await run(`${elsewhere}/list.jsonl`, out, 'jsonl', allow);
    const records = await recordsOf(out);
    expect(records.map((r) => r.status)).toEqual(['ok', 'ok']);
    const samples = records.filter((r) => r.texts.length > 0).length;
    expect(samples).toBeGreaterThan(0);
    // The run record keeps the run's sources: export reads what the run read.
    expect(await exportDataset(storage, out, `${elsewhere}/tars`, 'webdataset')).toMatchObject({ samples });
    // An output without a record (an older release): only the input's own place, unless widened.
    await storage.delete(`${out}/_capfilt-run.json`);
    const tars = `${elsewhere}/tars-old`;
    const refused = await exportDataset(storage, out, tars, 'webdataset').catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(
      /outside this run's local sources|is not a source of this run/,
    );
    expect(await storage.list(tars).catch(() => [])).toEqual([]);
    const exported = await exportDataset(storage, out, tars, 'webdataset', { sources: allow });
    expect(exported).toMatchObject({ shards: 1, samples });
  });

  it('a shard whose dataset file is missing is not complete: the rerun writes it again, and only it', async () => {
    const out = `${root}/out-missing`;
    await run(`${root}/wds`, out, 'webdataset');
    const before = await storage.read(`${out}/part-00001.tar`);
    await storage.delete(`${out}/part-00001.tar`);
    const again = await run(`${root}/wds`, out, 'webdataset');
    expect(again).toMatchObject({ processed: 1, skipped: 1 });
    expect((await storage.read(`${out}/part-00001.tar`)).equals(before)).toBe(true);
    // A JSONL-only output asked for Parquet: every shard is redone with its file.
    const plain = `${root}/out-plain`;
    await run(`${root}/wds`, plain, 'jsonl');
    expect(await run(`${root}/wds`, plain, 'parquet')).toMatchObject({ processed: 2, skipped: 0 });
    // Asked for tars now: the shards are redone, and the Parquet files of the records replaced go.
    expect(await run(`${root}/wds`, plain, 'webdataset')).toMatchObject({ processed: 2, skipped: 0 });
    expect(
      (await storage.list(plain)).map((f) => f.relPath).filter((n) => /\.(tar|parquet)$/.test(n)),
    ).toEqual(['part-00000.tar', 'part-00001.tar']);
  });

  it('export --format blip on a WebDataset input: never <tar>#<member> paths; --image-root copies the images out', async () => {
    const out = `${root}/out-blip`;
    await run(`${root}/wds`, out, 'jsonl');
    const chunks: string[] = [];
    const write = async (c: string) => {
      chunks.push(c);
    };
    const refused = await exportBlip(storage, out, write).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(UsageError);
    expect((refused as Error).message).toMatch(/pass --image-root <dir> to copy them out/);
    expect(chunks).toEqual([]);

    const imageRoot = `${root}/vis_root`;
    const n = await exportBlip(storage, out, write, { imageRoot });
    const annotations = JSON.parse(chunks.join('')) as { image: string; caption: string }[];
    expect(annotations).toHaveLength(n);
    expect(annotations.map((a) => `${a.image}\t${a.caption}`)).not.toContainEqual(
      expect.stringContaining('#'),
    );
    const records = await recordsOf(out);
    for (const a of annotations) {
      expect(a.image).toMatch(/^0000[01]\/[0-9]+\.jpg$/);
      const r = records.find((x) => x.source.endsWith(`#${a.image.split('/')[1]}`)) as OutputRecord;
      expect(r.texts).toContain(a.caption);
      const input = await tarMembers(await readFile(join(EXAMPLES, 'webdataset', `${r.shard}.tar`)));
      const copied = await storage.read(`${imageRoot}/${a.image}`);
      expect(copied.equals(input.get(a.image.split('/')[1]) as Buffer)).toBe(true);
      // A loader opens it by root + relative path (a file path locally, the object on S3).
      const opened = await sharp(where === 'local' ? join(imageRoot, a.image) : copied).metadata();
      expect(opened.width).toBe(r.width);
    }

    // Files already under the root are named by their path there.
    const fromFiles = `${root}/out-files`;
    await run(`${root}/data/captions.jsonl`, fromFiles, 'jsonl');
    chunks.length = 0;
    await exportBlip(storage, fromFiles, write, { imageRoot: `${root}/data/images` });
    const byPath = JSON.parse(chunks.join('')) as { image: string }[];
    expect(byPath.length).toBeGreaterThan(0);
    for (const a of byPath) expect(a.image).toMatch(/^\d{4}_[a-z_]+\.jpg$/);
  });
});
