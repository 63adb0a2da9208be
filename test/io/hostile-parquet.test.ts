import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadInputError } from '../../src/core/errors.js';
import type { InputOptions, PairRef } from '../../src/core/types.js';
import { readShard } from '../../src/io/readers/index.js';
import { Storage } from '../../src/io/storage/storage.js';
import { planShards } from '../../src/pipeline/plan.js';
import { makeParquet } from './fixtures.js';
import {
  editFirstPageHeader,
  editFooter,
  setColumnSize,
  setFileRows,
  setGroupRows,
  setPageUncompressedSize,
  setPageValues,
  withFooterLength,
} from './hostile-parquet.js';

const input: InputOptions = { imageColumn: 'url', textColumn: 'caption', shardSize: 100 };
const storage = new Storage();
const n = 5;
const cols = {
  url: Array.from({ length: n }, (_, i) => `https://example.org/${i}.jpg`),
  caption: Array.from({ length: n }, (_, i) => `caption ${i}`),
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-hostile-parquet-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Plans the file and reads every shard: the planned pair count and the pairs, or why reading failed. */
async function read(
  name: string,
  bytes: Buffer,
): Promise<{ planned: (number | null)[]; pairs: PairRef[]; error?: Error }> {
  const file = join(dir, name);
  await writeFile(file, bytes);
  const plan = await planShards(storage, file, { shardSize: 100 });
  const pairs: PairRef[] = [];
  try {
    for (const { shard } of plan) for await (const p of readShard(storage, shard, input)) pairs.push(p);
  } catch (err) {
    return { planned: plan.map((p) => p.pairs), pairs, error: err as Error };
  }
  return { planned: plan.map((p) => p.pairs), pairs };
}

/** The read failed as a BadInputError whose message matches (and quotes nothing of the data). */
function refused(result: { error?: Error; pairs: PairRef[] }, message: RegExp): void {
  expect(result.error).toBeInstanceOf(BadInputError);
  expect(result.error?.message).toMatch(message);
  expect(result.error?.message).not.toMatch(/example\.org|caption \d/);
  expect(result.pairs).toEqual([]);
}

describe('Parquet declared sizes are claims', () => {
  const snappy = makeParquet(cols, 'SNAPPY');
  const plainFile = makeParquet(cols, 'UNCOMPRESSED');

  it('the rewriting helper changes nothing it is not asked to', async () => {
    const same = editFirstPageHeader(
      editFooter(plainFile, () => {}),
      0,
      () => {},
    );
    const { planned, pairs, error } = await read('same.parquet', same);
    expect(error).toBeUndefined();
    expect(planned).toEqual([n]);
    expect(pairs.map((p) => p.text)).toEqual(cols.caption);
  });

  it('a 1 KB file claiming a 3 GB column chunk is refused before any read (it aborted Node)', async () => {
    const bytes = editFooter(snappy, (m) => setColumnSize(m, 0, 0, 3n << 30n));
    expect(bytes.length).toBeLessThan(1024);
    const result = await read('bigcol.parquet', bytes);
    expect(result.planned).toEqual([null]);
    refused(result, /row group 0, column 0 declares bytes 4-3221225\d+, outside the data/);
  });

  it('a row group claiming 10^12 rows is refused at once (it spun for minutes)', async () => {
    const t0 = performance.now();
    const result = await read(
      'rows.parquet',
      editFooter(snappy, (m) => {
        setGroupRows(m, 0, 10n ** 12n);
        setFileRows(m, 10n ** 12n);
      }),
    );
    refused(result, /declares 1000000000000 rows in \d+ bytes \(more rows than bytes\)/);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('a row group claiming more rows than its pages hold is refused, not padded or spun on', async () => {
    const result = await read(
      'short.parquet',
      editFooter(snappy, (m) => {
        setGroupRows(m, 0, 300n);
        setFileRows(m, 300n);
      }),
    );
    expect(result.planned).toEqual([300]);
    refused(result, /row group 0, column 0: the row group declares 300 rows but the pages hold 5/);
  });

  it('a negative row count is refused (it silently dropped every row)', async () => {
    const result = await read(
      'negative.parquet',
      editFooter(snappy, (m) => {
        setGroupRows(m, 0, -3n);
        setFileRows(m, -3n);
      }),
    );
    refused(result, /declares -3 rows/);
    const mismatch = await read(
      'mismatch.parquet',
      editFooter(snappy, (m) => setFileRows(m, 3n)),
    );
    refused(mismatch, /declares 3 rows but its row groups declare 5/);
  });

  it('an oversized footer length is a clear error, not a stack trace', async () => {
    const result = await read('footer.parquet', withFooterLength(snappy, 0x7fffffff));
    refused(result, /declares a 2147483647-byte footer in a \d+-byte file/);
    const short = await read('short-file.parquet', Buffer.from('PAR1PAR1'));
    refused(short, /8 bytes is too short for a Parquet file/);
  });

  it('a page claiming 2 GB uncompressed or 2^31 values is refused before anything is allocated', async () => {
    for (const [name, file] of [
      ['snappy', snappy],
      ['plain', plainFile],
    ] as const) {
      const big = await read(
        `${name}-page.parquet`,
        editFirstPageHeader(file, 0, (h) => setPageUncompressedSize(h, 0x7fffffff)),
      );
      refused(big, /row group 0, column 0: a \d+-byte page declares 2147483647 bytes uncompressed/);
      const many = await read(
        `${name}-values.parquet`,
        editFirstPageHeader(file, 1, (h) => setPageValues(h, 0x7fffffff)),
      );
      refused(many, /row group 0, column 1: a page declares 2147483647 values/);
    }
  });
});
