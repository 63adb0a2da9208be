/** Names of the files in a capfilt output folder: they derive from shard ids alone. */
import type { OutputOptions } from '../core/types.js';
import { validateId } from '../core/validate.js';
import { joinUri } from '../io/location.js';
import { MARKER_SUFFIX, SUMMARY_NAME } from '../io/readers/formats.js';

export type Compression = OutputOptions['compression'];

export interface ShardOutputNames {
  data: string;
  stats: string;
}

/** The extension of a shard's dataset file, per dataset format. */
export const DATASET_EXTENSIONS = { webdataset: 'tar', parquet: 'parquet' } as const;

/** `part-<shard>.tar` / `part-<shard>.parquet`: a shard's clean dataset, named like its records (id checked the same way). */
export function datasetName(shardId: string, format: keyof typeof DATASET_EXTENSIONS): string {
  validateId(shardId, 'shard id');
  return `part-${shardId}.${DATASET_EXTENSIONS[format]}`;
}

/**
 * Output names derive from the shard id alone, so a rerun or a redelivered job overwrites, never
 * duplicates. The id is checked first: one that could form a path (`../`, a separator, a leading
 * dot) never names a file, so every name stays directly inside `output`.
 */
export function shardOutputNames(
  output: string,
  shardId: string,
  compression: Compression = 'none',
): ShardOutputNames {
  validateId(shardId, 'shard id');
  return {
    data: joinUri(output, `part-${shardId}.jsonl${compression === 'gzip' ? '.gz' : ''}`),
    stats: joinUri(output, `part-${shardId}${MARKER_SUFFIX}`),
  };
}

/** Spelled once, in io/readers/formats.ts: folder inputs skip the folders these files mark. */
export { MARKER_SUFFIX, SUMMARY_NAME };

/** The output's run record (output/run-record.ts): which run the parts belong to. */
export const RUN_RECORD_NAME = '_capfilt-run.json';

/** The lock a local `capfilt run` holds on its output folder (output/lock.ts). */
export const LOCK_NAME = '_capfilt.lock';

/** Work files beside the parts: stage results spilled by queue jobs, checkpoints of unfinished shards. */
export const WORK_DIR = '_capfilt-work';

/**
 * Whether a file of an output folder (relative path) is one capfilt wrote: the parts, the summary,
 * the run record and the work files. `--overwrite` removes exactly these; a user's own files stay.
 */
export function isCapfiltFile(relPath: string): boolean {
  return (
    parsePartName(relPath) !== null ||
    relPath === SUMMARY_NAME ||
    relPath === RUN_RECORD_NAME ||
    relPath.startsWith(`${WORK_DIR}/`)
  );
}

/** What a part file is: the records, the marker, or the clean dataset file of `--output-format`. */
export type PartKind = 'data' | 'stats' | 'dataset';

/** Parses a part-<shard>.stats.json / .jsonl[.gz] / .tar / .parquet file name. */
export function parsePartName(relPath: string): { shardId: string; kind: PartKind; gzip: boolean } | null {
  const m = /^part-(.+?)(\.stats\.json|\.jsonl\.gz|\.jsonl|\.tar|\.parquet)$/.exec(relPath);
  if (!m || relPath.includes('/')) return null;
  const kind: PartKind = m[2] === '.stats.json' ? 'stats' : m[2].startsWith('.jsonl') ? 'data' : 'dataset';
  return { shardId: m[1], kind, gzip: m[2] === '.jsonl.gz' };
}
