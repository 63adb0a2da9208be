import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_INPUT } from '../../src/core/defaults.js';
import type { PairRef } from '../../src/core/types.js';
import { readShard } from '../../src/io/readers/index.js';
import { Storage } from '../../src/io/storage/storage.js';
import { planShards } from '../../src/pipeline/plan.js';
import { makeImage } from './fixtures.js';

/**
 * Folder inputs never follow links out of their root and never loop (issue 15). Before, a caption
 * `.txt` linked to /etc/passwd was copied into the output text, and a `loop -> ..` link turned a
 * folder of 2 images into 121 records (Node's recursive readdir follows folder links).
 */
describe('folder inputs and symbolic links', () => {
  let base: string;
  let root: string;
  const storage = new Storage();

  beforeAll(async () => {
    base = await realpath(await mkdtemp(join(tmpdir(), 'capfilt-folder-links-')));
    root = join(base, 'images');
    await mkdir(join(root, 'sub'), { recursive: true });
    await mkdir(join(base, 'elsewhere'));
    await writeFile(join(root, 'a.png'), await makeImage('png'));
    await writeFile(join(root, 'sub', 'b.png'), await makeImage('png', [20, 20, 200]));
    await symlink('/etc/passwd', join(root, 'a.txt'));
    await writeFile(join(root, 'sub', 'b.txt'), 'a blue square');
    await symlink('..', join(root, 'sub', 'loop'));
    await writeFile(join(base, 'elsewhere', 'c.png'), await makeImage('png'));
    await symlink(join(base, 'elsewhere'), join(root, 'out-dir'));
    await symlink(join(base, 'elsewhere', 'c.png'), join(root, 'out-file.png'));
    await symlink(join(root, 'a.png'), join(root, 'in-file.png'));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('lists each file once: no folder link is followed, a file link only when it stays in the root', async () => {
    expect((await storage.list(root)).map((f) => f.relPath)).toEqual([
      'a.png',
      'in-file.png',
      'sub/b.png',
      'sub/b.txt',
    ]);
  });

  it('2 images plus a link to one of them are 3 pairs, never a loop; a caption linked out is not read', async () => {
    const planned = await planShards(storage, root, { shardSize: 1000 });
    expect(planned.map((p) => p.pairs)).toEqual([3]);
    const pairs: PairRef[] = [];
    for await (const p of readShard(storage, planned[0].shard, DEFAULT_INPUT)) pairs.push(p);
    expect(pairs.map((p) => [p.key, p.text, p.invalid?.reason ?? null])).toEqual([
      ['a', null, 'empty_text'],
      ['in-file', null, 'empty_text'],
      ['sub/b', 'a blue square', null],
    ]);
    for (const p of pairs) expect(JSON.stringify(p)).not.toMatch(/root:x:0:0/);
  });
});
