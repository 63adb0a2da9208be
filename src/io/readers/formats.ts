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
