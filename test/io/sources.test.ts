import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SOURCES } from '../../src/core/defaults.js';
import { BlockedSourceError, NotFoundError } from '../../src/core/errors.js';
import type { SourcePolicy } from '../../src/core/types.js';
import { sourcePolicyFor } from '../../src/io/sources.js';
import { Storage } from '../../src/io/storage/storage.js';

/** The source policy on real files: roots by real path, links, devices, FIFOs, and no existence oracle. */
describe('source policy', () => {
  let base: string;
  let root: string;
  let outside: string;
  const storage = new Storage();
  const read = (uri: string, sources: SourcePolicy) =>
    storage.read(uri, { key: 'k', limits: { maxBytes: 1 << 20 }, sources }).catch((e: unknown) => e);

  beforeAll(async () => {
    base = await realpath(await mkdtemp(join(tmpdir(), 'capfilt-sources-')));
    root = join(base, 'dataset');
    outside = join(base, 'private');
    await mkdir(join(root, 'images'), { recursive: true });
    await mkdir(outside);
    await writeFile(join(root, 'm.jsonl'), '{}\n');
    await writeFile(join(root, 'images', 'a.jpg'), 'inside');
    await writeFile(join(outside, 'secret.jpg'), 'private bytes');
    await symlink(join(outside, 'secret.jpg'), join(root, 'images', 'link-out.jpg'));
    await symlink(join(root, 'images', 'a.jpg'), join(root, 'images', 'link-in.jpg'));
    await symlink(join(outside, 'gone.jpg'), join(root, 'images', 'dangling.jpg'));
    await symlink(outside, join(root, 'images', 'dir-out'));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it("defaults: a local input's own folder, an S3 input's own bucket, plus what the run adds", async () => {
    expect(await sourcePolicyFor(storage, [join(root, 'm.jsonl')], DEFAULT_SOURCES)).toEqual({
      localRoots: [root],
      s3Buckets: [],
    });
    expect(await sourcePolicyFor(storage, [root], DEFAULT_SOURCES)).toEqual({
      localRoots: [root],
      s3Buckets: [],
    });
    expect(await sourcePolicyFor(storage, ['s3://data/in/m.jsonl'], DEFAULT_SOURCES)).toEqual({
      localRoots: [],
      s3Buckets: ['data'],
    });
    const widened = await sourcePolicyFor(storage, ['s3://data/in'], {
      localRoots: [outside],
      s3Buckets: ['more'],
    });
    expect(widened).toEqual({ localRoots: [outside], s3Buckets: ['data', 'more'] });
  });

  it('reads a file under the root, also through a link that stays inside', async () => {
    const policy = { localRoots: [root], s3Buckets: [] };
    expect(String(await read(join(root, 'images', 'a.jpg'), policy))).toBe('inside');
    expect(String(await read(join(root, 'images', 'link-in.jpg'), policy))).toBe('inside');
    expect(String(await read(`file://${join(root, 'images', 'a.jpg')}`, policy))).toBe('inside');
  });

  it('refuses what lies outside the root: a path, ../ climbing, a link out, a folder link out', async () => {
    const policy = { localRoots: [root], s3Buckets: [] };
    for (const uri of [
      join(outside, 'secret.jpg'),
      `${root}/images/../../private/secret.jpg`,
      join(root, 'images', 'link-out.jpg'),
      join(root, 'images', 'dir-out', 'secret.jpg'),
      '/etc/passwd',
      'file:///etc/passwd',
    ]) {
      const err = await read(uri, policy);
      expect(err, uri).toBeInstanceOf(BlockedSourceError);
      expect((err as Error).message, uri).not.toMatch(/private bytes|root:x/);
    }
  });

  it('is no existence oracle: a missing path outside the root is refused exactly like an existing one', async () => {
    const policy = { localRoots: [root], s3Buckets: [] };
    const present = (await read(join(outside, 'secret.jpg'), policy)) as Error;
    const missing = (await read(join(outside, 'no-such.jpg'), policy)) as Error;
    const deep = (await read('/no/such/folder/x.jpg', policy)) as Error;
    for (const err of [present, missing, deep]) expect(err).toBeInstanceOf(BlockedSourceError);
    expect(missing.message.replace('no-such', 'secret')).toBe(present.message);
    // A dangling link in the root is refused too: where it leads cannot be told without following it.
    expect(await read(join(root, 'images', 'dangling.jpg'), policy)).toBeInstanceOf(BlockedSourceError);
    // Inside the root, missing is missing.
    expect(await read(join(root, 'images', 'none.jpg'), policy)).toBeInstanceOf(NotFoundError);
  });

  it('never opens kernel, device or FIFO files, even under an allowed root', async () => {
    const fifo = join(root, 'images', 'pipe.jpg');
    execFileSync('mkfifo', [fifo]);
    const everything = { localRoots: ['/'], s3Buckets: [] };
    for (const uri of [
      '/proc/self/environ',
      '/dev/zero',
      '/dev/urandom',
      '/sys/kernel/uevent_seqnum',
      fifo,
    ]) {
      expect(await read(uri, everything), uri).toBeInstanceOf(BlockedSourceError);
    }
  }, 5_000);

  it('limits S3 references to the allowed buckets; http(s) URLs are always allowed (behind the address guard)', async () => {
    const policy = { localRoots: [], s3Buckets: ['data'] };
    const err = await read('s3://other/x.jpg', policy);
    expect(err).toBeInstanceOf(BlockedSourceError);
    expect((err as Error).message).toBe(
      's3://other/x.jpg: bucket other is not a source of this run (allowed: data; --allow-bucket adds one)',
    );
    // No local path at all for a remote input.
    expect(await read(join(root, 'images', 'a.jpg'), policy)).toBeInstanceOf(BlockedSourceError);
  });
});
