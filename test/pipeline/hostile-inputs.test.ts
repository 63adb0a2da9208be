import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { runOptions } from '../../src/core/options.js';
import type { OutputRecord } from '../../src/core/types.js';
import { Filter } from '../../src/filter/filter.js';
import { derivedKey } from '../../src/io/readers/row.js';
import { Storage } from '../../src/io/storage/storage.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { makeImage, makeParquet } from '../io/fixtures.js';
import { editFooter, setColumnSize } from '../io/hostile-parquet.js';

/**
 * Hostile input files through the real local runner: a bad file fails its own shard loudly (or
 * rejects its bad rows one by one) while the other inputs are written, and nothing crashes.
 */
describe('hostile input files in a run', () => {
  let models: TinyModels;
  let engines: { captioner: Captioner; filter: Filter };
  const storage = new Storage();
  let root: string;

  beforeAll(async () => {
    models = await importTinyModels();
    engines = {
      captioner: await Captioner.load(models.captioner, { batchSize: 4 }),
      filter: await Filter.load(models.filter, { batchSize: 4 }),
    };
    root = await mkdtemp(join(tmpdir(), 'capfilt-hostile-'));
  });
  afterAll(async () => {
    await engines?.captioner.close();
    await engines?.filter.close();
    models?.dispose();
    await rm(root, { recursive: true, force: true });
  });

  async function run(name: string, files: Record<string, Buffer | string>) {
    const input = join(root, name, 'in');
    const output = join(root, name, 'out');
    await mkdir(input, { recursive: true });
    for (const [file, body] of Object.entries(files)) await writeFile(join(input, file), body);
    const result = await runLocal({
      input,
      output,
      captionerDir: '',
      filterDir: '',
      storage,
      options: runOptions({ input: { shardSize: 1000 }, batchSize: 4 }),
      progress: 'none',
      engines,
      log: () => {},
    });
    const records = async (shard: string): Promise<OutputRecord[]> =>
      (await readFile(join(output, `part-${shard}.jsonl`), 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as OutputRecord);
    return { result, records };
  }

  it('a Parquet file claiming a 3 GB column fails its shard for good; the other file is written', async () => {
    const cols = { url: ['https://example.org/a.jpg'], caption: ['a caption'] };
    const good = makeParquet(cols);
    const { result, records } = await run('parquet', {
      'good.parquet': good,
      'liar.parquet': editFooter(good, (m) => setColumnSize(m, 0, 0, 3n << 30n)),
    });
    expect(result.failed).toEqual([
      {
        shard: 'liar',
        error: expect.stringMatching(
          /liar\.parquet: row group 0, column 0 declares bytes 4-\d+, outside the data/,
        ),
      },
    ]);
    expect(result.summary).toBeNull();
    expect((await records('good')).map((r) => r.key)).toEqual([
      derivedKey(0, 'https://example.org/a.jpg', 'a caption'),
    ]);
  });

  it('a tar member that is a symlink becomes a rejected record instead of vanishing', async () => {
    const p = pack();
    const chunks: Buffer[] = [];
    p.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    const ended = new Promise<void>((r) => p.on('end', () => r()));
    p.entry({ name: 'a.png' }, await makeImage());
    p.entry({ name: 'a.txt' }, 'a red square');
    p.entry({ name: 'secret.png', type: 'symlink', linkname: '/etc/passwd' });
    p.finalize();
    await ended;
    const { result, records } = await run('tar', { 's.tar': Buffer.concat(chunks) });
    expect(result.summary?.records).toBe(2);
    const out = await records('s');
    expect(out.map((r) => [r.key, r.status, r.reason ?? null])).toEqual([
      ['a', 'ok', null],
      ['secret', 'rejected', 'bad_row'],
    ]);
    expect(out[1].error).toBe('member secret.png is a symlink, not a regular file');
  });

  it('a stray quote at row 10 of a 1,000-row CSV costs that row alone; all 1,000 pairs are accounted for', async () => {
    const rows = Array.from({ length: 1000 }, (_, i) => `missing/${i}.png,caption ${i}`);
    rows[9] = 'missing/9.png,"caption 9';
    const { result, records } = await run('csv', { 'm.csv': `image,caption\n${rows.join('\n')}\n` });
    expect(result.failed).toEqual([]);
    expect(result.summary?.records).toBe(1000);
    expect(result.summary?.reasons).toEqual({ missing_object: 999, bad_row: 1 });
    const out = await records('m-0-1000');
    expect(out[9]).toMatchObject({ status: 'rejected', reason: 'bad_row' });
    expect(out[10].source).toMatch(/missing\/10\.png$/);
  });
});
