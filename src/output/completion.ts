/**
 * Whether a shard is complete in an output, decided one way for the local runner, the queue and
 * refilter/export: its marker (part-<shard>.stats.json, written last) parses, and its data file
 * is there. A shard that fails either test is redone, never trusted.
 */
import { NotFoundError } from '../core/errors.js';
import type { DatasetFormat, ShardStats } from '../core/types.js';
import type { ObjectInfo, Storage } from '../io/storage/storage.js';
import { type Compression, parsePartName, shardOutputNames } from './layout.js';
import { readJsonFile, readRunRecord } from './run-record.js';

/** A shard's completion marker, or null when it is absent or unreadable. */
export async function readMarker(storage: Storage, uri: string): Promise<ShardStats | null> {
  const stats = (await readJsonFile(storage, uri))?.value as ShardStats | null | undefined;
  // A marker names its shard (export reads the shard's input through it): one without is not a marker.
  return typeof stats === 'object' && stats !== null && typeof stats.shard?.uri === 'string' ? stats : null;
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

/** One shard's files in an output listing. */
export interface ShardFiles {
  data: { uri: string; gzip: boolean }[];
  stats: string | null;
  /** Its clean dataset files (`--output-format`), by file name. */
  dataset: string[];
}

/** An output's part files by shard id, from one listing of it (whatever their compression). */
export function partsByShard(files: readonly ObjectInfo[]): Map<string, ShardFiles> {
  const out = new Map<string, ShardFiles>();
  for (const f of files) {
    const p = parsePartName(f.relPath);
    if (!p) continue;
    const entry = out.get(p.shardId) ?? { data: [], stats: null, dataset: [] };
    out.set(p.shardId, entry);
    if (p.kind === 'data') entry.data.push({ uri: f.uri, gzip: p.gzip });
    else if (p.kind === 'dataset') entry.dataset.push(f.relPath);
    else entry.stats = f.uri;
  }
  return out;
}

/**
 * Whether a shard's marker names the dataset file `format` asks for and that file is there (a
 * run asking for tars redoes shards written without them); records only (`jsonl`) need none.
 */
export function hasDataset(stats: ShardStats, files: ShardFiles, format: DatasetFormat): boolean {
  if (format === 'jsonl') return true;
  return stats.dataset?.format === format && files.dataset.includes(stats.dataset.file);
}

/** Every file of an output folder, or none when it does not exist yet. */
export async function listOutput(storage: Storage, output: string): Promise<ObjectInfo[]> {
  try {
    return await storage.list(output);
  } catch (err) {
    if (err instanceof NotFoundError) return [];
    throw err;
  }
}

/**
 * The complete shards of an output: those of its recorded run (output/run-record.ts), in plan
 * order; for an output of an older release without a record, every complete shard found.
 */
export async function completedShards(storage: Storage, output: string): Promise<CompletedShard[]> {
  const kind = await storage.kind(output);
  if (kind === null) throw new NotFoundError(output);
  const record = await readRunRecord(storage, output);
  const parts = partsByShard(await storage.list(output));
  const gzip = record ? record.options.output.compression === 'gzip' : null;
  const ids = record ? record.shards.map((s) => s.shard.id) : [...parts.keys()];
  const out: CompletedShard[] = [];
  for (const id of ids) {
    const files = parts.get(id);
    const data = files?.data.find((d) => gzip === null || d.gzip === gzip);
    const stats = data && files?.stats ? await readMarker(storage, files.stats) : null;
    if (data && stats) out.push({ shardId: id, data: data.uri, stats });
  }
  return out;
}
