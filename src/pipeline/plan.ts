import { NotFoundError, UsageError } from '../core/errors.js';
import type { InputFormat, InputOptions, ShardRef } from '../core/types.js';
import { baseName, isInside, relativeUri } from '../io/location.js';
import { countCsvRows, delimiterOf } from '../io/readers/csv.js';
import { folderImages, hidden } from '../io/readers/folder.js';
import { boundedKey, fileKeyOf, formatOf, outsideOutputs, SUMMARY_NAME } from '../io/readers/formats.js';
import { checkColumns } from '../io/readers/index.js';
import { countJsonlRows } from '../io/readers/jsonl.js';
import { countParquetRows } from '../io/readers/parquet.js';
import { IMAGE_EXTENSIONS } from '../io/readers/webdataset.js';
import type { ObjectInfo, Storage } from '../io/storage/storage.js';

export interface PlannedShard {
  shard: ShardRef;
  /** Pairs the shard holds, when known before reading (tars are only counted by reading). */
  pairs: number | null;
}

export interface PlanOptions {
  shardSize: number;
  human?: boolean;
  /** The columns the run reads by: a manifest without them is refused here, before any work. */
  columns?: Pick<InputOptions, 'imageColumn' | 'textColumn'>;
}

async function countRows(storage: Storage, uri: string, format: 'jsonl' | 'csv' | 'tsv'): Promise<number> {
  return format === 'jsonl' ? countJsonlRows(storage, uri) : countCsvRows(storage, uri, delimiterOf(format));
}

function rowRanges(prefix: string, base: Omit<ShardRef, 'id'>, rows: number, size: number): PlannedShard[] {
  const out: PlannedShard[] = [];
  for (let start = 0; start < rows; start += size) {
    const end = Math.min(rows, start + size);
    out.push({
      shard: { ...base, id: `${prefix}-${start}-${end}`, rowStart: start, rowEnd: end },
      pairs: end - start,
    });
  }
  return out;
}

/**
 * Cuts an input (a file, or a folder/prefix of files) into shards with ids that depend only on
 * the input and the shard size: one shard per tar or parquet file, `shardSize` rows per shard of
 * a JSONL/CSV/TSV manifest, `shardSize` images per shard of an image folder.
 */
export async function planShards(
  storage: Storage,
  input: string,
  options: PlanOptions,
): Promise<PlannedShard[]> {
  if (!Number.isInteger(options.shardSize) || options.shardSize < 1) {
    throw new UsageError(`shard size must be a positive integer (got ${options.shardSize})`);
  }
  const kind = await storage.kind(input);
  if (kind === null) throw new NotFoundError(input);
  const files =
    kind === 'file' ? [{ uri: input, relPath: baseName(input), size: 0 }] : await inputFiles(storage, input);
  const inputs = files.filter((f) => formatOf(f.relPath) !== null && !hidden(f.relPath));
  const prefix = options.human ? 'human-' : '';
  const planned: PlannedShard[] = [];
  const seen = new Set<string>();
  for (const f of inputs) {
    const format = formatOf(f.relPath) as Exclude<InputFormat, 'folder'>;
    let key = prefix + fileKeyOf(kind === 'file' ? baseName(f.uri) : relativeUri(input, f.uri));
    if (seen.has(key)) key = prefix + boundedKey(f.relPath.replace(/[^A-Za-z0-9._-]+/g, '_'));
    seen.add(key);
    const base = { format, uri: f.uri, ...(options.human ? { human: true } : {}) };
    await checkColumns(storage, f.uri, format, options.columns ?? {});
    if (format === 'webdataset') planned.push({ shard: { ...base, id: key }, pairs: null });
    // The footer alone gives the row count: progress then has a pair total with Parquet inputs too.
    else if (format === 'parquet')
      planned.push({ shard: { ...base, id: key }, pairs: await countParquetRows(storage, f.uri) });
    else planned.push(...rowRanges(key, base, await countRows(storage, f.uri, format), options.shardSize));
  }
  if (inputs.length === 0 && kind === 'folder') {
    const images = folderImages(files);
    if (images.length === 0)
      throw new UsageError(`${input} holds no manifests, tars, parquet files or images`);
    const key = prefix + (fileKeyOf(baseName(input)) || 'images');
    planned.push(
      ...rowRanges(
        key,
        { format: 'folder', uri: input, ...(options.human ? { human: true } : {}) },
        images.length,
        options.shardSize,
      ),
    );
  }
  if (planned.length === 0) {
    const ext = baseName(input).split('.').pop() ?? '';
    throw new UsageError(
      IMAGE_EXTENSIONS.has(ext.toLowerCase())
        ? `${input} is a single image; pass its folder`
        : `${input}: no readable input (JSONL, CSV, TSV, Parquet, WebDataset tar or an image folder)`,
    );
  }
  return planned;
}

/**
 * The files of a folder input, less capfilt output folders inside it (an earlier run's records
 * are not manifests). A folder input that is itself a capfilt output is refused.
 */
async function inputFiles(storage: Storage, input: string): Promise<ObjectInfo[]> {
  const { files, outputs } = outsideOutputs(await storage.list(input));
  if (outputs.includes('')) {
    throw new UsageError(
      `${input} is a capfilt output folder (it holds shard markers or ${SUMMARY_NAME}), not an input; ` +
        'pass the dataset it was made from, or one of its files',
    );
  }
  return files;
}

/** Refuses an output inside an input folder: the next run would read the output as input. */
async function refuseNestedOutput(
  storage: Storage,
  inputs: readonly string[],
  output: string,
): Promise<void> {
  for (const input of inputs) {
    if (isInside(output, input) && (await storage.kind(input)) === 'folder') {
      throw new UsageError(
        `the output ${output} lies inside the input folder ${input}; write it outside the input`,
      );
    }
  }
}

export interface RunPlanRequest {
  input: string;
  /** Where the run writes: refused when it lies inside an input folder. */
  output?: string;
  /** The columns the run reads by (run options). */
  columns?: Pick<InputOptions, 'imageColumn' | 'textColumn'>;
  /** Human-annotated manifests or folders: their shards are marked human (written unfiltered). */
  human?: readonly string[];
  shardSize: number;
}

/**
 * The shards of a whole run, for the local runner and the queue alike: the input's, then each
 * human input's. Two inputs that map to one shard id would overwrite each other's output, so
 * that is refused before anything runs.
 */
export async function planRun(storage: Storage, req: RunPlanRequest): Promise<PlannedShard[]> {
  if (req.output !== undefined)
    await refuseNestedOutput(storage, [req.input, ...(req.human ?? [])], req.output);
  const options = { shardSize: req.shardSize, ...(req.columns ? { columns: req.columns } : {}) };
  const planned = await planShards(storage, req.input, options);
  for (const h of req.human ?? []) {
    planned.push(...(await planShards(storage, h, { ...options, human: true })));
  }
  const ids = new Set<string>();
  for (const { shard } of planned) {
    if (ids.has(shard.id)) throw new UsageError(`two inputs map to the shard id ${shard.id}; rename one`);
    ids.add(shard.id);
  }
  return planned;
}

/** Pairs in all planned shards, or null when some are only counted by reading them (tars). */
export function totalPairs(planned: readonly PlannedShard[]): number | null {
  return planned.every((s) => s.pairs !== null) ? planned.reduce((a, s) => a + (s.pairs ?? 0), 0) : null;
}
