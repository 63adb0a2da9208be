import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/core/errors.js';
import type { InputOptions, PairRef } from '../../src/core/types.js';
import { readShard } from '../../src/io/readers/index.js';
import { Storage } from '../../src/io/storage/storage.js';
import { planShards } from '../../src/pipeline/plan.js';
import { makeTar } from '../../tools/tar.js';
import { type S3Server, startS3 } from '../helpers/s3.js';
import { jsonl, makeImage, makeParquet } from './fixtures.js';

/** A LAION-400M-style shard: upper-case URL/TEXT, img2dataset's key, LAION's metadata columns. */
const LAION = {
  URL: ['https://example.org/0.jpg', 'imgs/1.jpg', 'https://example.org/2.jpg'],
  TEXT: ['a red circle', 'a blue square', 'a green triangle'],
  key: ['000010000', '000010001', '000010002'],
  similarity: ['0.31', '0.29', '0.33'],
  WIDTH: ['96', '96', '128'],
  HEIGHT: ['96', '64', '128'],
};

function laionCsv(columns: string[] = Object.keys(LAION)): string {
  const cols = columns as (keyof typeof LAION)[];
  const rows = LAION.URL.map((_, i) => cols.map((c) => LAION[c][i]).join(','));
  return `${[cols.join(','), ...rows].join('\n')}\n`;
}

async function pairsOf(storage: Storage, uri: string, input: Partial<InputOptions> = {}): Promise<PairRef[]> {
  const o: InputOptions = { shardSize: 100, ...input };
  const out: PairRef[] = [];
  for (const { shard } of await planShards(storage, uri, { shardSize: o.shardSize, columns: o })) {
    for await (const p of readShard(storage, shard, o)) out.push(p);
  }
  return out;
}

const brief = (p: PairRef) => ({
  key: p.key,
  image: p.image?.kind === 'location' ? p.image.uri : null,
  text: p.text,
  invalid: p.invalid?.reason ?? null,
});

/** The same checks on a local folder and on an S3 prefix (the fauxqs endpoint). */
const places: {
  name: string;
  setup(): Promise<{ storage: Storage; root: string }>;
  stop?(): Promise<void>;
}[] = [];
let s3: S3Server | undefined;
places.push({
  name: 'local',
  async setup() {
    return { storage: new Storage(), root: await mkdtemp(join(tmpdir(), 'capfilt-columns-')) };
  },
});
places.push({
  name: 'S3',
  async setup() {
    s3 ??= await startS3();
    const storage = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
    return { storage, root: `s3://${await s3.createBucket()}/laion` };
  },
});

afterAll(async () => {
  await s3?.stop();
});

describe.each(places)('column resolution ($name)', (place) => {
  let storage: Storage;
  let root: string;
  beforeAll(async () => {
    ({ storage, root } = await place.setup());
    await storage.write(`${root}/upper.csv`, laionCsv());
    await storage.write(`${root}/upper.parquet`, makeParquet(LAION));
    await storage.write(`${root}/mixed.jsonl`, jsonl([{ Url: 'a.png', Caption: 'mixed case', UID: 'u-1' }]));
  });
  afterAll(() => storage.close());

  it('reads a LAION/img2dataset CSV and the same data as Parquet by their own column names', async () => {
    for (const name of ['upper.csv', 'upper.parquet']) {
      const pairs = await pairsOf(storage, `${root}/${name}`);
      expect(pairs.map(brief), name).toEqual([
        { key: '000010000', image: 'https://example.org/0.jpg', text: 'a red circle', invalid: null },
        { key: '000010001', image: `${root}/imgs/1.jpg`, text: 'a blue square', invalid: null },
        { key: '000010002', image: 'https://example.org/2.jpg', text: 'a green triangle', invalid: null },
      ]);
      // The other columns travel with the pair as its metadata; key, URL and TEXT are not repeated.
      expect(pairs[1].meta, name).toEqual({ similarity: '0.29', WIDTH: '96', HEIGHT: '64' });
    }
    const mixed = await pairsOf(storage, `${root}/mixed.jsonl`);
    expect(mixed.map(brief)).toEqual([
      { key: 'u-1', image: `${root}/a.png`, text: 'mixed case', invalid: null },
    ]);
  });

  it('a flag names a column in any case; a column that is not there fails before a pair is read', async () => {
    const lower = await pairsOf(storage, `${root}/upper.csv`, { imageColumn: 'url', textColumn: 'text' });
    expect(lower.map((p) => p.text)).toEqual(LAION.TEXT);
    for (const name of ['upper.csv', 'upper.parquet']) {
      const err = await pairsOf(storage, `${root}/${name}`, { textColumn: 'TEXTX' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toBe(
        `column 'TEXTX' not in ${name} (columns: URL, TEXT, key, similarity, WIDTH, HEIGHT); use --text-column`,
      );
    }
    await storage.write(`${root}/short.csv`, laionCsv(['URL', 'TEXT', 'key']));
    const err = await pairsOf(storage, `${root}/short.csv`, { textColumn: 'TEXTX' }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      "column 'TEXTX' not in short.csv (columns: URL, TEXT, key); use --text-column",
    );
  });

  it('key is never an image reference: a file with only key and text has no image column', async () => {
    await storage.write(`${root}/keys/k.csv`, 'key,caption\ns00,a caption\n');
    const err = await pairsOf(storage, `${root}/keys/k.csv`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(
      /^no image column in k\.csv \(columns: key, caption; looked for image, url, .*\); use --image-column$/,
    );
    // A JSONL row without the image field is a rejected pair, never a pair whose image is its key.
    await storage.write(
      `${root}/keys/k.jsonl`,
      jsonl([
        { image: 'a.png', caption: 'first', key: 'k0' },
        { caption: 'second', key: 's00' },
      ]),
    );
    const pairs = await pairsOf(storage, `${root}/keys/k.jsonl`);
    expect(pairs.map(brief)).toEqual([
      { key: 'k0', image: `${root}/keys/a.png`, text: 'first', invalid: null },
      { key: 's00', image: null, text: 'second', invalid: 'missing_image' },
    ]);
  });

  it('a WebDataset .json caption is found in any case; sidecar texts lose their trailing newline', async () => {
    await storage.write(
      `${root}/wds/00000.tar`,
      await makeTar([
        { name: 's0.jpg', data: await makeImage('jpeg') },
        { name: 's0.txt', data: 'caption with a newline\n' },
        { name: 's1.jpg', data: await makeImage('jpeg') },
        { name: 's1.json', data: '{"TEXT": "caption from json", "similarity": 0.3}' },
      ]),
    );
    const pairs = await pairsOf(storage, `${root}/wds`);
    expect(pairs.map((p) => [p.key, p.text, p.invalid?.reason ?? null])).toEqual([
      ['s0', 'caption with a newline', null],
      ['s1', 'caption from json', null],
    ]);
    expect(pairs[1].meta).toEqual({ TEXT: 'caption from json', similarity: 0.3 });
  });
});

describe('column resolution on a hand-written file', () => {
  it('lists at most 20 columns in the message', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-columns-'));
    const names = Array.from({ length: 25 }, (_, i) => `c${i}`);
    await writeFile(join(dir, 'wide.csv'), `${names.join(',')}\n${names.map(() => 'x').join(',')}\n`);
    const err = await pairsOf(new Storage(), join(dir, 'wide.csv')).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/columns: c0, c1, .*, c19, … 5 more; looked for/);
  });
});
