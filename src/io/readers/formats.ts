import { createHash } from 'node:crypto';
import type { InputFormat } from '../../core/types.js';

/** The format a file name announces, or null (images and sidecars are not manifests). */
export function formatOf(name: string): Exclude<InputFormat, 'folder'> | null {
  const lower = name.toLowerCase();
  if (lower.endsWith('.tar') || lower.endsWith('.tar.gz') || lower.endsWith('.tgz')) return 'webdataset';
  const n = lower.replace(/\.gz$/, '');
  if (n.endsWith('.jsonl') || n.endsWith('.ndjson')) return 'jsonl';
  if (n.endsWith('.csv')) return 'csv';
  if (n.endsWith('.tsv')) return 'tsv';
  if (n.endsWith('.parquet')) return 'parquet';
  return null;
}

/**
 * Longest file key: shard ids, part names (`part-<id>.jsonl.gz`), stats markers and their temp
 * names (`.<name>.<pid>-<random>.tmp`) are built from it and must stay within NAME_MAX (255 bytes).
 */
const MAX_KEY_LENGTH = 120;

/** `key` cut to MAX_KEY_LENGTH, a hash of the whole key keeping cut keys distinct and stable. */
export function boundedKey(key: string): string {
  if (key.length <= MAX_KEY_LENGTH) return key;
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 8);
  return `${key.slice(0, MAX_KEY_LENGTH - hash.length - 1)}-${hash}`;
}

/** A file-system-safe, stable name for an input file: its path under the input root, extension dropped. */
export function fileKeyOf(relPath: string): string {
  const noExt = relPath.replace(/\.gz$/i, '').replace(/\.(jsonl|ndjson|csv|tsv|parquet|tar|tgz)$/i, '');
  return boundedKey(noExt.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'input');
}

/** `_summary.json`: capfilt writes it into an output folder once the output is complete. */
export const SUMMARY_NAME = '_summary.json';
/** The suffix of a shard's completion marker, `part-<shard>.stats.json`. */
export const MARKER_SUFFIX = '.stats.json';

/** Whether a file name is one only capfilt writes into an output folder (a shard marker, the summary). */
export function isOutputMarker(name: string): boolean {
  return name === SUMMARY_NAME || (name.startsWith('part-') && name.endsWith(MARKER_SUFFIX));
}

function folderOf(relPath: string): string {
  const slash = relPath.lastIndexOf('/');
  return slash < 0 ? '' : relPath.slice(0, slash);
}

/**
 * A folder listing less the capfilt output folders in it (a folder holding an output marker, and
 * everything below it): an earlier run's records and shards are never read as input. `outputs`:
 * the output folders found ('' is the listed folder itself).
 */
export function outsideOutputs<T extends { relPath: string }>(
  files: readonly T[],
): { files: T[]; outputs: string[] } {
  const outputs = new Set<string>();
  for (const f of files)
    if (isOutputMarker(f.relPath.slice(f.relPath.lastIndexOf('/') + 1))) outputs.add(folderOf(f.relPath));
  const inside = (relPath: string) => {
    for (const o of outputs) if (o === '' || relPath.startsWith(`${o}/`)) return true;
    return false;
  };
  return { files: files.filter((f) => !inside(f.relPath)), outputs: [...outputs].sort() };
}
