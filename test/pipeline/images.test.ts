import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import { Storage } from '../../src/io/storage/storage.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { tarMembers } from '../../tools/tar.js';
import { FIXTURE, IMAGE_NAMES, importTinyModels, type TinyModels } from '../helpers/models.js';

// A WebDataset output packs each image's original bytes. A local run keeps the bytes it decoded
// until the batch is written instead of fetching the image again: one GET per image URL.
describe('--output-format webdataset over http(s) image URLs', () => {
  let models: TinyModels;
  let server: Server;
  let base: string;
  const gets = new Map<string, number>();
  const files = IMAGE_NAMES.map((name) => `${name}.jpg`);

  beforeAll(async () => {
    models = await importTinyModels();
    server = createServer((req, res) => {
      const name = (req.url ?? '').slice(1);
      gets.set(name, (gets.get(name) ?? 0) + 1);
      if (!files.includes(name)) return void res.writeHead(404).end();
      res.end(readFileSync(join(FIXTURE, 'images', name)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server?.close();
    models?.dispose();
  });

  it('fetches each image once and packs exactly the bytes it fetched', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-wds-http-'));
    const rows = files.map((f, i) => ({ key: `k${i}`, url: `${base}/${f}`, caption: `picture ${i}` }));
    await writeFile(join(dir, 'urls.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n'));
    const storage = new Storage();
    try {
      const result = await runLocal({
        input: join(dir, 'urls.jsonl'),
        output: join(dir, 'out'),
        captionerDir: models.captioner,
        filterDir: models.filter,
        options: runOptions({
          batchSize: 4,
          // Every text kept, so that every image goes into the tar.
          filter: { threshold: 0 },
          output: { format: 'webdataset' },
          limits: { allowPrivateNetwork: true },
        }),
        storage,
        progress: 'none',
        log: () => {},
      });
      expect(result.failed).toEqual([]);
    } finally {
      storage.close();
    }
    expect(Object.fromEntries(gets)).toEqual(Object.fromEntries(files.map((f) => [f, 1])));
    const members = await tarMembers(await readFile(join(dir, 'out', 'part-urls-0-6.tar')));
    rows.forEach((row, i) => {
      const packed = members.get(`${row.key}.jpg`);
      expect(packed?.equals(readFileSync(join(FIXTURE, 'images', files[i]))), row.key).toBe(true);
    });
  });
});
