import { createHash } from 'node:crypto';
import pMap from 'p-map';
import { NotFoundError } from '../core/errors.js';
import type { ShardRef } from '../core/types.js';
import { parseLocation } from '../io/location.js';
import { folderImages } from '../io/readers/folder.js';
import type { ObjectInfo, Storage } from '../io/storage/storage.js';

/** The fingerprint of a shard whose input is gone: never equal to one that was read. */
export const MISSING_INPUT = 'missing';

/**
 * A stamp of one input file: its ETag on S3, mtime + size locally, the address of a URL. It
 * changes when the file is rewritten, which is what an incremental re-run needs to notice.
 */
export async function fileStamp(storage: Storage, uri: string): Promise<string> {
  const st = await storage.stat(uri);
  if (st?.kind !== 'file') throw new NotFoundError(uri);
  return st.stamp;
}

/**
 * The fingerprint of a shard's input: the stamp of the file it reads (a manifest row range is
 * redone when its manifest changes), or, for an image folder, the stamps of the images in its
 * range. Sidecar captions of folder shards are not stamped (size only through the listing).
 * `listing` gives the folder's files when the caller already has them.
 */
export async function shardFingerprint(
  storage: Storage,
  shard: ShardRef,
  listing?: Promise<ObjectInfo[]>,
): Promise<string> {
  const h = createHash('sha256');
  h.update(`${shard.format}|${shard.uri}|${shard.rowStart ?? ''}|${shard.rowEnd ?? ''}|`);
  if (shard.format === 'folder') {
    const files = await (listing ?? storage.list(shard.uri));
    const images = folderImages(files).slice(shard.rowStart ?? 0, shard.rowEnd ?? undefined);
    const sizes = new Map(files.map((f) => [f.relPath, f.size]));
    for (const img of images) {
      const stem = img.relPath.replace(/\.[^./]*$/, '');
      h.update(`${img.relPath}:${img.size}:${sizes.get(`${stem}.txt`) ?? -1}|`);
      if (parseLocation(img.uri).kind === 'local') h.update(await fileStamp(storage, img.uri));
    }
  } else {
    h.update(await fileStamp(storage, shard.uri));
  }
  return h.digest('hex').slice(0, 32);
}

/**
 * Fingerprints of many shards, by shard id (a folder is listed once for all its shards). A shard
 * whose input vanished since planning gets MISSING_INPUT: it is still planned, and fails when read.
 */
export async function fingerprintShards(
  storage: Storage,
  shards: readonly ShardRef[],
): Promise<Map<string, string>> {
  const listings = new Map<string, Promise<ObjectInfo[]>>();
  const listingOf = (uri: string) => {
    const l = listings.get(uri) ?? storage.list(uri);
    listings.set(uri, l);
    return l;
  };
  const prints = await pMap(
    shards,
    (shard) =>
      shardFingerprint(storage, shard, shard.format === 'folder' ? listingOf(shard.uri) : undefined).catch(
        (err: unknown) => {
          if (err instanceof NotFoundError) return MISSING_INPUT;
          throw err;
        },
      ),
    { concurrency: 16 },
  );
  return new Map(shards.map((s, i) => [s.id, prints[i]]));
}
