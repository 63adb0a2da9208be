import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { runOptions } from '../../src/core/options.js';
import { Filter } from '../../src/filter/filter.js';
import { Storage } from '../../src/io/storage/storage.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { makeImage } from '../io/fixtures.js';

describe('long input file names', () => {
  let models: TinyModels;
  let engines: { captioner: Captioner; filter: Filter };
  const storage = new Storage();

  beforeAll(async () => {
    models = await importTinyModels();
    engines = {
      captioner: await Captioner.load(models.captioner, { batchSize: 2 }),
      filter: await Filter.load(models.filter, { batchSize: 2 }),
    };
  });
  afterAll(async () => {
    await engines?.captioner.close();
    await engines?.filter.close();
    models?.dispose();
  });

  it('a 230-character manifest name runs, and reruns, with every output name within 255 bytes', async () => {
    const root = await mkdtemp(join(tmpdir(), 'capfilt-long-'));
    const dir = join(root, 'in');
    await mkdir(dir);
    await writeFile(join(dir, 'a.png'), await makeImage());
    const names = ['x'.repeat(224), 'x'.repeat(223) + 'y'].map((stem) => `${stem}.jsonl`);
    for (const name of names) {
      expect(name).toHaveLength(230);
      await writeFile(join(dir, name), `${JSON.stringify({ image: 'a.png', caption: 'a red square' })}\n`);
    }
    const output = join(root, 'out');
    const run = () =>
      runLocal({
        input: dir,
        output,
        captionerDir: '',
        filterDir: '',
        storage,
        options: runOptions({ input: { shardSize: 10 }, batchSize: 2 }),
        progress: 'none',
        engines,
        log: () => {},
      });
    const first = await run();
    expect(first.failed.map((f) => f.error)).toEqual([]);
    expect(first.summary?.records).toBe(2);
    const again = await run();
    expect(again.failed).toEqual([]);
    expect(again.skipped).toBe(2);
    const files = await readdir(output);
    for (const f of files) expect(Buffer.byteLength(f)).toBeLessThanOrEqual(255);
    // Two names that differ only past the cut still get two shards.
    expect(new Set(files.filter((f) => f.endsWith('.stats.json'))).size).toBe(2);
  });
});
