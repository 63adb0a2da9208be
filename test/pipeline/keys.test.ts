import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Captioner } from '../../src/captioner/captioner.js';
import { runOptions } from '../../src/core/options.js';
import type { OutputRecord } from '../../src/core/types.js';
import { Filter } from '../../src/filter/filter.js';
import { Storage } from '../../src/io/storage/storage.js';
import { completedShards } from '../../src/output/completion.js';
import { readRecords } from '../../src/output/read.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { type S3Server, startS3 } from '../helpers/s3.js';

const EXAMPLES = join(import.meta.dirname, '../../examples');

describe('sample keys survive renaming and moving a manifest', () => {
  let models: TinyModels;
  let engines: { captioner: Captioner; filter: Filter };
  let s3: S3Server;
  const local = new Storage();
  let remote: Storage;
  const options = runOptions({
    input: { shardSize: 4 },
    batchSize: 4,
    decoding: { maxLength: 12, minLength: 6 },
  });

  beforeAll(async () => {
    models = await importTinyModels();
    engines = {
      captioner: await Captioner.load(models.captioner, { batchSize: 4 }),
      filter: await Filter.load(models.filter, { batchSize: 4 }),
    };
    s3 = await startS3();
    remote = new Storage({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
  });
  afterAll(async () => {
    await engines?.captioner.close();
    await engines?.filter.close();
    remote?.close();
    await s3?.stop();
    models?.dispose();
  });

  async function run(storage: Storage, input: string, output: string): Promise<OutputRecord[]> {
    const result = await runLocal({
      input,
      output,
      captionerDir: '',
      filterDir: '',
      storage,
      options,
      progress: 'none',
      engines,
      log: () => {},
    });
    expect(result.failed).toEqual([]);
    const out: OutputRecord[] = [];
    for (const s of await completedShards(storage, output)) {
      for await (const r of readRecords(storage, s.data)) out.push(r);
    }
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Six example pairs without a key column, their images beside the manifest. */
  async function stage(storage: Storage, folder: string, name: string): Promise<void> {
    const rows = (await readFile(join(EXAMPLES, 'jsonl/captions.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .slice(0, 6);
    const lines = rows.map((l) => {
      const row = JSON.parse(l) as { image: string; caption: string };
      return JSON.stringify({ image: row.image.replace('../images/', 'img/'), caption: row.caption });
    });
    await storage.write(`${folder}/${name}`, `${lines.join('\n')}\n`);
    for (const l of lines) {
      const image = (JSON.parse(l) as { image: string }).image;
      await storage.write(`${folder}/${image}`, await readFile(join(EXAMPLES, 'images', image.slice(4))));
    }
  }

  const captionsByKey = (records: OutputRecord[]) =>
    records.map((r) => ({ key: r.key, status: r.status, captions: r.synthetic.map((s) => s.text) }));

  it.each(['local', 'S3'])(
    '%s: the same pairs under another name and folder get the same keys and captions',
    async (where) => {
      const storage = where === 'local' ? local : remote;
      const root =
        where === 'local'
          ? await mkdtemp(join(tmpdir(), 'capfilt-keys-'))
          : `s3://${await s3.createBucket()}`;
      await stage(storage, `${root}/first`, 'captions.jsonl');
      await stage(storage, `${root}/moved/elsewhere`, 'renamed-train-00001.jsonl');
      const a = await run(storage, `${root}/first/captions.jsonl`, `${root}/out-a`);
      const b = await run(storage, `${root}/moved/elsewhere/renamed-train-00001.jsonl`, `${root}/out-b`);
      expect(a).toHaveLength(6);
      expect(a.every((r) => r.status === 'ok')).toBe(true);
      // Keys are the row number and a hash of the row's image reference and text.
      for (const r of a) expect(r.key).toMatch(/^00000000[0-5]-[0-9a-f]{8}$/);
      expect(new Set(a.map((r) => r.key)).size).toBe(6);
      expect(captionsByKey(b)).toEqual(captionsByKey(a));
      expect(a.some((r) => r.synthetic[0].text !== a[0].synthetic[0].text)).toBe(true);
    },
  );
});
