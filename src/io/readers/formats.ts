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

/** A file-system-safe, stable name for an input file: its path under the input root, extension dropped. */
export function fileKeyOf(relPath: string): string {
  const noExt = relPath.replace(/\.gz$/i, '').replace(/\.(jsonl|ndjson|csv|tsv|parquet|tar|tgz)$/i, '');
  return noExt.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'input';
}
