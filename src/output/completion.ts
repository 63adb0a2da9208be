/**
 * Whether a shard is complete in an output, decided one way for the local runner, the queue and
 * refilter/export: its marker (part-<shard>.stats.json, written last) parses, and its data file
 * is there. A shard that fails either test is redone, never trusted.
 */
import { NotFoundError } from '../core/errors.js';
import type { ShardStats } from '../core/types.js';
import type { Storage } from '../io/storage/storage.js';
import { type Compression, parsePartName, shardOutputNames } from './layout.js';

/** A shard's completion marker, or null when it is absent or unreadable. */
export async function readMarker(storage: Storage, uri: string): Promise<ShardStats | null> {
  let body: Buffer;
  try {
    body = await storage.read(uri);
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
  try {
    const stats = JSON.parse(body.toString('utf8')) as ShardStats;
    return typeof stats === 'object' && stats !== null ? stats : null;
  } catch {
    return null;
  }
}

/** The stats of a complete shard, or null when the shard has to be (re)done. */
export async function completedShardStats(
  storage: Storage,
  output: string,
  shardId: string,
  compression: Compression,
): Promise<ShardStats | null> {
  const names = shardOutputNames(output, shardId, compression);
  const stats = await readMarker(storage, names.stats);
  return stats && (await storage.exists(names.data)) ? stats : null;
}

export async function isShardComplete(
  storage: Storage,
  output: string,
  shardId: string,
  compression: Compression,
): Promise<boolean> {
  return (await completedShardStats(storage, output, shardId, compression)) !== null;
}

export interface CompletedShard {
  shardId: string;
  /** The data file, part-<shard>.jsonl or .jsonl.gz. */
  data: string;
  stats: ShardStats;
}

/** Every complete shard of an output folder, found by listing it (whatever its compression). */
export async function completedShards(storage: Storage, output: string): Promise<CompletedShard[]> {
  const data = new Map<string, string>();
  const markers: { id: string; uri: string }[] = [];
  for (const f of await storage.list(output)) {
    const p = parsePartName(f.relPath);
    if (p?.kind === 'data') data.set(p.shardId, f.uri);
    else if (p?.kind === 'stats') markers.push({ id: p.shardId, uri: f.uri });
  }
  const out: CompletedShard[] = [];
  for (const m of markers) {
    const d = data.get(m.id);
    const stats = d ? await readMarker(storage, m.uri) : null;
    if (d && stats) out.push({ shardId: m.id, data: d, stats });
  }
  return out;
}
