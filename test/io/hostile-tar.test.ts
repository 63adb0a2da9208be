import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type Header, pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InputOptions, PairRef } from '../../src/core/types.js';
import { readShard } from '../../src/io/readers/index.js';
import { Storage } from '../../src/io/storage/storage.js';
import { planShards } from '../../src/pipeline/plan.js';
import { makeImage } from './fixtures.js';

const input: InputOptions = { imageColumn: 'image', textColumn: 'caption', shardSize: 100 };
const storage = new Storage();
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'capfilt-hostile-tar-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A tar of entries of any type, in order (links, devices and FIFOs carry no data). */
async function tarOf(
  entries: { header: Partial<Header> & Pick<Header, 'name'>; data?: Buffer | string }[],
): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', resolve);
    p.on('error', reject);
  });
  for (const e of entries) {
    if (e.data === undefined) p.entry(e.header);
    else p.entry(e.header, e.data);
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function readTar(name: string, bytes: Buffer, maxBytes?: number): Promise<PairRef[]> {
  await writeFile(join(dir, name), bytes);
  const [{ shard }] = await planShards(storage, join(dir, name), { shardSize: 100 });
  const out: PairRef[] = [];
  for await (const p of readShard(storage, shard, input, maxBytes ? { maxBytes } : undefined)) out.push(p);
  return out;
}

const file = (name: string, data: Buffer | string) => ({ header: { name, type: 'file' as const }, data });

describe('WebDataset tar: every member not read becomes a rejected record with the reason', () => {
  it('links, devices, FIFOs and oversized members reject their sample; nothing vanishes', async () => {
    const jpg = await makeImage('jpeg');
    const tar = await tarOf([
      file('a.jpg', jpg),
      file('a.txt', 'a regular sample'),
      { header: { name: 'b.jpg', type: 'symlink', linkname: '/etc/passwd' } },
      file('b.txt', 'caption of a symlinked image'),
      { header: { name: 'c.jpg', type: 'link', linkname: 'a.jpg' } },
      file('c.txt', 'caption of a hard link'),
      { header: { name: 'd.jpg', type: 'character-device', devmajor: 1, devminor: 5 } },
      { header: { name: 'e.jpg', type: 'fifo' } },
      file('e.txt', 'caption of a fifo'),
      file('f.jpg', Buffer.alloc(5000, 1)),
      file('f.txt', 'an image over the byte limit'),
      file('g.jpg', jpg),
      file('g.txt', Buffer.alloc(5 << 20, 'x')),
      { header: { name: 'h', type: 'directory' } },
      file('.DS_Store', 'hidden'),
      { header: { name: 'i.png', type: 'symlink', linkname: '../../secret.png' } },
      file('j.jpg', jpg),
      file('j.txt', 'a sample with a linked extra member'),
      { header: { name: 'j.cls', type: 'symlink', linkname: '/dev/zero' } },
      file('k.jpg', jpg),
      file('k.json', 'root:x:0:0:root:/root:/bin/bash'),
      file('k.txt', 'metadata that is not JSON'),
    ]);
    const pairs = await readTar('members.tar', tar, 4096);
    expect(pairs.map((p) => [p.key, p.invalid?.reason ?? 'ok', p.invalid?.message ?? ''])).toEqual([
      ['a', 'ok', ''],
      ['b', 'bad_row', 'member b.jpg is a symlink, not a regular file'],
      ['c', 'bad_row', 'member c.jpg is a link, not a regular file'],
      ['d', 'bad_row', 'member d.jpg is a character-device, not a regular file'],
      ['e', 'bad_row', 'member e.jpg is a fifo, not a regular file'],
      ['f', 'too_large', 'member f.jpg is 5000 bytes, over the 4096-byte limit'],
      ['g', 'too_large', `member g.txt is ${5 << 20} bytes, over the 4194304-byte limit`],
      ['i', 'bad_row', 'member i.png is a symlink, not a regular file'],
      ['j', 'bad_row', 'member j.cls is a symlink, not a regular file'],
      ['k', 'ok', ''],
    ]);
    expect(pairs.map((p) => p.index)).toEqual(pairs.map((_, i) => i));
    expect(pairs.filter((p) => p.invalid).every((p) => p.image === null)).toBe(true);
    expect(pairs[9].meta).toEqual({ json_error: 'k.json is not valid JSON (byte offset 0)' });
  });

  it('the same in a .tar.gz, with the run image cap as the default member limit', async () => {
    const tar = await tarOf([
      file('a.png', await makeImage()),
      file('a.txt', 'fine'),
      { header: { name: 'b.png', type: 'symlink', linkname: 'a.png' } },
      file('b.txt', 'linked'),
    ]);
    const pairs = await readTar('members.tar.gz', gzipSync(tar));
    expect(pairs.map((p) => p.invalid?.reason ?? 'ok')).toEqual(['ok', 'bad_row']);
  });
});
