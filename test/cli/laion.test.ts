import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutputRecord } from '../../src/core/types.js';
import { Storage } from '../../src/io/storage/storage.js';
import { completedShards } from '../../src/output/completion.js';
import { readRecords } from '../../src/output/read.js';
import { spawnCli } from '../../tools/cli-process.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { type S3Server, startS3 } from '../helpers/s3.js';

const IMAGES = join(import.meta.dirname, '../../examples/images');
const NAMES = ['0000_red_circle.jpg', '0001_blue_square.jpg', '0002_green_triangle.jpg'];

/** img2dataset/LAION columns, upper case as LAION writes them, images beside the manifest. */
function laion(url: (name: string) => string): string {
  const rows = NAMES.map((n, i) => `${url(n)},a picture number ${i},00000000${i},0.3${i},96,96`);
  return `${['URL,TEXT,key,similarity,WIDTH,HEIGHT', ...rows].join('\n')}\n`;
}

describe.each(['local', 'S3'])('capfilt run on a LAION-style manifest (%s)', (where) => {
  let models: TinyModels;
  let s3: S3Server | undefined;
  let storage: Storage;
  let root: string;
  let s3Flags: string[] = [];
  const env = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' };

  beforeAll(async () => {
    models = await importTinyModels();
    if (where === 'local') {
      storage = new Storage();
      root = await mkdtemp(join(tmpdir(), 'capfilt-laion-'));
    } else {
      s3 = await startS3();
      storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
      root = `s3://${await s3.createBucket()}`;
      s3Flags = ['--s3-endpoint', s3.endpoint, '--s3-path-style'];
    }
    for (const n of NAMES) await storage.write(`${root}/data/img/${n}`, await readFile(join(IMAGES, n)));
    await storage.write(
      `${root}/data/upper.csv`,
      laion((n) => `img/${n}`),
    );
    await storage.write(
      `${root}/gone/upper.csv`,
      laion((n) => `img/${n}`),
    );
  });
  afterAll(async () => {
    storage?.close();
    await s3?.stop();
    models?.dispose();
  });

  const run = async (input: string, output: string, ...extra: string[]) => {
    const p = spawnCli(
      [
        'run',
        ...['--input', input, '--output', output, '--captioner', models.captioner, '--filter', models.filter],
        ...['--max-length', '12', '--min-length', '6', '--progress', 'none', ...s3Flags, ...extra],
      ],
      env,
    );
    return { code: await p.exited, out: p.stdout(), all: p.output() };
  };

  it('reads URL/TEXT/key by default: keys from the key column, other columns kept as meta', async () => {
    const res = await run(`${root}/data/upper.csv`, `${root}/out`);
    expect(res.code, res.all).toBe(0);
    expect(res.out).toMatch(/ok 3, rejected 0/);
    const records: OutputRecord[] = [];
    for (const s of await completedShards(storage, `${root}/out`)) {
      for await (const r of readRecords(storage, s.data)) records.push(r);
    }
    expect(records.map((r) => [r.key, r.source, r.web?.text, r.meta])).toEqual(
      NAMES.map((n, i) => [
        `00000000${i}`,
        `${root}/data/img/${n}`,
        `a picture number ${i}`,
        { similarity: `0.3${i}`, WIDTH: '96', HEIGHT: '96' },
      ]),
    );
  });

  it('a column that is not there fails before any work, naming the file, its columns and the flag', async () => {
    const res = await run(`${root}/data/upper.csv`, `${root}/typo`, '--text-column', 'TEXTX');
    expect(res.code).toBe(2);
    expect(res.all.trim()).toBe(
      "capfilt: column 'TEXTX' not in upper.csv (columns: URL, TEXT, key, similarity, WIDTH, HEIGHT); use --text-column",
    );
    expect(await storage.kind(`${root}/typo`)).toBeNull();
  });

  it('a run in which every pair is rejected exits 1 with its summary', async () => {
    // The manifest's images are not beside it: every pair is a missing object.
    const res = await run(`${root}/gone/upper.csv`, `${root}/gone-out`);
    expect(res.code, res.all).toBe(1);
    expect(res.out).toMatch(/done\. 3 pairs in 1 shards/);
    expect(res.out).toMatch(/ok 0, rejected 3 \(missing_object 3\)/);
    expect(res.all).toMatch(/capfilt: every pair was rejected \(missing_object 3\); check --image-column/);
  });

  it('--output-format webdataset writes tars beside the records; export writes Parquet from them', async () => {
    const res = await run(`${root}/data/upper.csv`, `${root}/wds-out`, '--output-format', 'webdataset');
    expect(res.code, res.all).toBe(0);
    const stats = JSON.parse(
      (await storage.read(`${root}/wds-out/part-upper-0-3.stats.json`)).toString('utf8'),
    );
    expect(stats.dataset).toMatchObject({ format: 'webdataset', file: 'part-upper-0-3.tar' });
    expect(await storage.exists(`${root}/wds-out/part-upper-0-3.tar`)).toBe(true);
    const exp = spawnCli(
      ['export', '--input', `${root}/wds-out`, '--format', 'parquet', '--output', `${root}/pq`, ...s3Flags],
      env,
    );
    expect(await exp.exited, exp.output()).toBe(0);
    expect(exp.output()).toMatch(/in 1 parquet shards ->/);
    expect(await storage.exists(`${root}/pq/part-upper-0-3.parquet`)).toBe(true);
    const noOutput = spawnCli(
      ['export', '--input', `${root}/wds-out`, '--format', 'webdataset', ...s3Flags],
      env,
    );
    expect(await noOutput.exited).toBe(2);
    expect(noOutput.output()).toBe('capfilt: --format webdataset needs --output <folder>\n');
  });
});
