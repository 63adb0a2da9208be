import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, crc32, createDeflate } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import type { PairRef } from '../../src/core/types.js';
import { processPixels } from '../../src/io/pixel-budget.js';
import { Storage } from '../../src/io/storage/storage.js';
import { loadSamples } from '../../src/pipeline/stages.js';

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([head, body, crc]);
}

/** A solid RGB PNG of any size, streamed through deflate (a 9999×9999 one is about 300 KB). */
async function solidPng(width: number, height: number): Promise<Buffer> {
  const row = Buffer.alloc(1 + width * 3, 90);
  row[0] = 0; // filter type: none
  const deflate = createDeflate({ level: 9, strategy: constants.Z_RLE });
  const parts: Buffer[] = [];
  deflate.on('data', (d: Buffer) => parts.push(d));
  const ended = new Promise((r) => deflate.once('end', r));
  const block = Buffer.concat(Array(100).fill(row));
  for (let y = 0; y < height; y += 100) {
    const chunk = block.subarray(0, Math.min(100, height - y) * row.length);
    if (!deflate.write(chunk)) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await ended;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', Buffer.concat(parts)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * Decoded pixels in flight are bounded per process (issue 15). Before, a small 9999×9999 PNG
 * (under the 100-megapixel cap) named by 32 rows was decoded 16 at a time, each 300 MB of RGB:
 * the worker peaked at 4.9 GB. Now the process's pixel budget decodes such images one at a time.
 */
describe('one huge image named by many rows', () => {
  let dir: string;
  const storage = new Storage();
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'capfilt-pixel-budget-'));
    await writeFile(join(dir, 'huge.png'), await solidPng(9999, 9999));
  });
  afterAll(async () => {
    storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('is decoded within the process budget: every row loads, the process never holds GBs', async () => {
    const pairs: PairRef[] = Array.from({ length: 16 }, (_, i) => ({
      key: `row-${i}`,
      shardId: 's',
      index: i,
      source: `m.jsonl#${i}`,
      image: { kind: 'location', uri: join(dir, 'huge.png') },
      text: 'a grey square',
      meta: {},
      human: true,
    }));
    const options = runOptions({ sources: { localRoots: [dir] } });
    expect(options.limits.concurrency).toBe(16);
    const samples = await loadSamples(pairs, { storage, options, captioner: null, filter: null });
    expect(samples.map((s) => s.rejection ?? [s.width, s.height])).toEqual(Array(16).fill([9999, 9999]));
    expect(processPixels.peak).toBe(9999 * 9999);
    expect(processPixels.inUse).toBe(0);
    // Peak resident memory of this test process (its own fork): one decoded image (300 MB) and
    // libvips' working memory (measured 756 MB in all), not several of them (1.4 GB with six
    // allowed at once; libuv's 4 threads decode at most 4 at a time here, 16 on bigger hosts).
    expect(process.resourceUsage().maxRSS * 1024).toBeLessThan(1.1 * 2 ** 30);
    // 16 serial decodes of 100 megapixels: 23 s on a 2-core machine at load 27.
  }, 120_000);
});
