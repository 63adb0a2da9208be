import { errorMessage } from '../../core/errors.js';
import type { PairRef, ShardRef } from '../../core/types.js';
import type { ObjectInfo, Storage } from '../storage/storage.js';
import { outsideOutputs } from './formats.js';
import { invalidJson } from './row.js';
import { MAX_ROW_BYTES } from './text.js';
import { IMAGE_EXTENSIONS } from './webdataset.js';

function stemOf(relPath: string): string {
  const slash = relPath.lastIndexOf('/');
  const dot = relPath.lastIndexOf('.');
  return dot > slash ? relPath.slice(0, dot) : relPath;
}

function extOf(relPath: string): string {
  const slash = relPath.lastIndexOf('/');
  const dot = relPath.lastIndexOf('.');
  return dot > slash ? relPath.slice(dot + 1).toLowerCase() : '';
}

/** Dot and underscore names (.DS_Store, _summary.json, _tmp/…) are never inputs. */
export function hidden(relPath: string): boolean {
  return relPath.split('/').some((p) => p.startsWith('.') || p.startsWith('_'));
}

/**
 * The images of a folder (or prefix), sorted: the listing a folder shard's row range indexes.
 * Capfilt output folders inside it are not part of it.
 */
export function folderImages(files: ObjectInfo[]): ObjectInfo[] {
  return outsideOutputs(files).files.filter(
    (f) => !hidden(f.relPath) && IMAGE_EXTENSIONS.has(extOf(f.relPath)),
  );
}

/** Images with a sidecar `<name>.txt` caption (and optional `<name>.json` metadata). */
export async function* readFolder(storage: Storage, shard: ShardRef): AsyncGenerator<PairRef> {
  const files = await storage.list(shard.uri);
  const byPath = new Map(files.map((f) => [f.relPath, f]));
  const images = folderImages(files);
  const start = shard.rowStart ?? 0;
  const end = Math.min(shard.rowEnd ?? images.length, images.length);
  for (let i = start; i < end; i++) {
    const img = images[i];
    const stem = stemOf(img.relPath);
    const pair: PairRef = {
      key: stem,
      shardId: shard.id,
      index: i - start,
      source: img.uri,
      image: { kind: 'location', uri: img.uri },
      text: null,
      meta: {},
    };
    const txt = byPath.get(`${stem}.txt`);
    const json = byPath.get(`${stem}.json`);
    try {
      // Sidecars are rows: bounded like a manifest row (a listed file is a regular file in the root).
      const bounded = { limits: { maxBytes: MAX_ROW_BYTES } };
      // A sidecar caption's trailing newline (or spaces) is not part of it.
      if (txt) pair.text = (await storage.read(txt.uri, bounded)).toString('utf8').trim();
      if (json) {
        const text = (await storage.read(json.uri, bounded)).toString('utf8');
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (err) {
          // JSON.parse's own message would quote the file.
          throw new Error(`${stem}.json is ${invalidJson(err, text, 0)}`);
        }
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
          pair.meta = parsed as Record<string, unknown>;
      }
    } catch (err) {
      pair.meta = { sidecar_error: errorMessage(err) };
    }
    if (pair.text === null || pair.text.trim() === '') {
      pair.invalid = { reason: 'empty_text', message: `${img.relPath} has no ${stem}.txt caption` };
    }
    yield pair;
  }
}
