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

/** Parses a part-<shard>.stats.json / part-<shard>.jsonl[.gz] file name. */
export function parsePartName(
  relPath: string,
): { shardId: string; kind: 'data' | 'stats'; gzip: boolean } | null {
  const m = /^part-(.+?)(\.stats\.json|\.jsonl\.gz|\.jsonl)$/.exec(relPath);
  if (!m || relPath.includes('/')) return null;
  return { shardId: m[1], kind: m[2] === '.stats.json' ? 'stats' : 'data', gzip: m[2] === '.jsonl.gz' };
}
