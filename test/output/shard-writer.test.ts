import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { recordOptions, runOptions } from '../../src/core/options.js';
import type { OutputRecord, ShardRef } from '../../src/core/types.js';
import { type AtomicWriter, Storage } from '../../src/io/storage/storage.js';
import { shardOutputNames } from '../../src/output/layout.js';
import { ShardWriter } from '../../src/output/shard-writer.js';
import { emptyTimings, summarize } from '../../src/output/stats.js';

const options = recordOptions(runOptions());
const shard: ShardRef = { id: 'm-0-3', format: 'jsonl', uri: '/in/m.jsonl', rowStart: 0, rowEnd: 3 };

function record(i: number, over: Partial<OutputRecord> = {}): OutputRecord {
  return {
    key: `k${i}`,
    source: `/img/${i}.jpg`,
    shard: shard.id,
    index: i,
    width: 10,
    height: 10,
    web: { text: `web ${i}`, itm: 0.55, itc: 0.1, kept: true },
    synthetic: [{ text: `syn ${i}`, token_ids: [1, 2], itm: 0.05, itc: 0.2, kept: false }],
    texts: [`web ${i}`],
    status: 'ok',
    reason: null,
    error: null,
    human: false,
    meta: {},
    models: { captioner: 'c', filter: 'f' },
    options,
    ...over,
  };
}

describe('ShardWriter', () => {
  it('a write error (a full disk) rejects the append and fails the commit instead of crashing', async () => {
    class FullDisk extends Storage {
      override async createAtomicWriter(): Promise<AtomicWriter> {
        const stream = new Writable({
          write(_chunk, _enc, cb) {
            setTimeout(() => cb(new Error('ENOSPC: no space left on device')), 5);
          },
        });
        // As the real writers do: commit waits for the file stream, so its error surfaces there.
        const commit = async () => {
          stream.end();
          await finished(stream);
        };
        return { stream, commit, abort: async () => undefined };
      }
    }
    for (const compression of ['none', 'gzip'] as const) {
      const writer = await ShardWriter.open(new FullDisk(), '/nowhere', shard, compression);
      const written = (async () => {
        await writer.append([record(0)]);
        return writer.commit(emptyTimings(), new Date(), options);
      })();
      await expect(written).rejects.toThrow(/ENOSPC/);
      await writer.abort();
    }
  });

  it('writes data then the marker with counts, histograms and timings; gzip when asked', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-writer-'));
    const storage = new Storage();
    for (const compression of ['none', 'gzip'] as const) {
      const w = await ShardWriter.open(storage, out, shard, compression);
      await w.append([record(0), record(1)]);
      await w.append([
        record(2, {
          status: 'rejected',
          reason: 'undecodable',
          error: 'k2: cannot decode image: bad 123',
          web: null,
          synthetic: [],
          texts: [],
        }),
      ]);
      const names = shardOutputNames(out, shard.id, compression);
      expect(await storage.exists(names.data)).toBe(false);
      const stats = await w.commit(
        { ...emptyTimings(), caption: 12.34 },
        new Date(Date.now() - 1000),
        options,
      );
      let body = await readFile(names.data);
      if (compression === 'gzip') body = gunzipSync(body);
      expect(
        body
          .toString()
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l).key),
      ).toEqual(['k0', 'k1', 'k2']);
      const marker = JSON.parse(await readFile(names.stats, 'utf8'));
      expect(marker).toEqual(JSON.parse(JSON.stringify(stats)));
      expect(marker).toMatchObject({
        records: 3,
        status: { ok: 2, rejected: 1 },
        reasons: { undecodable: 1 },
        errors: { 'cannot decode image: bad N': 1 },
        kept: { records: 2, web: 2, synthetic: 0, texts: 2, human: 0 },
        itmHistogram: { web: [0, 0, 0, 0, 0, 2, 0, 0, 0, 0], synthetic: [2, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
        shard,
      });
      expect(marker.timingsMs.caption).toBe(12.3);
      expect(marker.samplesPerSecond).toBeGreaterThan(0);
    }
    const s = summarize([
      JSON.parse(await readFile(join(out, 'part-m-0-3.stats.json'), 'utf8')),
      JSON.parse(await readFile(join(out, 'part-m-0-3.stats.json'), 'utf8')),
    ]);
    expect(s).toMatchObject({
      shards: 2,
      records: 6,
      status: { ok: 4, rejected: 2 },
      reasons: { undecodable: 2 },
    });
  });

  it('opening a shard removes its stale marker; aborting leaves neither data nor marker', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-writer-'));
    const storage = new Storage();
    await writeFile(join(out, 'part-m-0-3.stats.json'), '{"stale":true}');
    const w = await ShardWriter.open(storage, out, shard);
    await w.append([record(0)]);
    await w.abort();
    expect(await readdir(out)).toEqual([]);
  });
});
