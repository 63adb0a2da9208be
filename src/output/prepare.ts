/**
 * Before a run writes into an output: the one rule, for `capfilt run`, `produce` and `refilter`,
 * that keeps an output folder holding exactly one run. Another run (other input, deciding options
 * or models) is refused unless `overwrite`; the same run continues: complete shards whose input is
 * unchanged are kept, new and changed ones are (re)done, and parts of shards no longer in the
 * input are removed. The plan is recorded before any shard is written.
 */
import pMap from 'p-map';
import { UsageError } from '../core/errors.js';
import type { OutputOptions, ShardStats } from '../core/types.js';
import type { ObjectInfo, Storage } from '../io/storage/storage.js';
import { hasDataset, listOutput, partsByShard, readMarker, type ShardFiles } from './completion.js';
import { isCapfiltFile, parsePartName } from './layout.js';
import {
  anotherRunError,
  inputFingerprint,
  type OutputPlan,
  type RecordedShard,
  type RunRecordFile,
  readRunRecord,
  runDifferences,
  runRecordOf,
  writeRunRecord,
} from './run-record.js';

export interface PreparedOutput {
  record: RunRecordFile;
  /** Complete shards whose input is unchanged since they were written: kept as they are. */
  done: Map<string, ShardStats>;
  /** Shards to (re)do, in plan order. */
  todo: RecordedShard[];
  /** What was found and done, one line each, for the log. */
  notes: string[];
}

export interface PrepareOptions {
  /** Replace whatever run the output holds: every capfilt file in it is removed first. */
  overwrite?: boolean;
}

/** Removes the files of `listing` that `remove` picks; returns how many. */
async function removeFiles(
  storage: Storage,
  listing: readonly ObjectInfo[],
  remove: (f: ObjectInfo) => boolean,
): Promise<number> {
  const doomed = listing.filter(remove);
  for (const f of doomed) await storage.delete(f.uri);
  return doomed.length;
}

/** The recorded run against the plan: refused when it is another run; what changed in the input. */
function compare(output: string, recorded: RunRecordFile | null, plan: OutputPlan, listing: ObjectInfo[]) {
  if (!recorded) {
    if (listing.some((f) => isCapfiltFile(f.relPath))) {
      throw new UsageError(
        `${output} holds capfilt output without a run record (from an older release, or another ` +
          'tool): use --overwrite to replace it, or another --output',
      );
    }
    return [];
  }
  const differences = runDifferences(recorded, plan);
  if (differences.length > 0) throw anotherRunError(output, differences);
  const before = new Map(recorded.shards.map((s) => [s.shard.id, s.fingerprint]));
  const now = new Set(plan.shards.map((s) => s.shard.id));
  const added = plan.shards.filter((s) => !before.has(s.shard.id)).length;
  const changed = plan.shards.filter(
    (s) => before.has(s.shard.id) && before.get(s.shard.id) !== s.fingerprint,
  );
  const removed = recorded.shards.filter((s) => !now.has(s.shard.id)).length;
  if (added + changed.length + removed === 0) return [];
  return [
    `the input changed since the recorded run: ${added} shards added, ${changed.length} changed ` +
      `(redone), ${removed} gone (their parts removed)`,
  ];
}

/** Whether a planned shard's output is complete and was made from the input it has now. */
async function upToDate(
  storage: Storage,
  s: RecordedShard,
  files: ShardFiles | undefined,
  output: OutputOptions,
) {
  const gzip = output.compression === 'gzip';
  if (!files?.stats || !files.data.some((d) => d.gzip === gzip)) return null;
  const stats = await readMarker(storage, files.stats);
  return stats && stats.fingerprint === s.fingerprint && hasDataset(stats, files, output.format)
    ? stats
    : null;
}

/** Checks `plan` against the run `output` holds, clears what must go, and records the plan. */
export async function prepareOutput(
  storage: Storage,
  output: string,
  plan: OutputPlan,
  options: PrepareOptions = {},
): Promise<PreparedOutput> {
  let listing = await listOutput(storage, output);
  const notes: string[] = [];
  let recorded: RunRecordFile | null = null;
  if (options.overwrite) {
    const n = await removeFiles(storage, listing, (f) => isCapfiltFile(f.relPath));
    if (n > 0) notes.push(`--overwrite: removed ${n} files of the run ${output} held`);
    listing = [];
  } else {
    recorded = await readRunRecord(storage, output);
    notes.push(...compare(output, recorded, plan, listing));
  }
  const planned = new Set(plan.shards.map((s) => s.shard.id));
  await removeFiles(storage, listing, (f) => {
    const part = parsePartName(f.relPath);
    return part !== null && !planned.has(part.shardId);
  });
  const parts = partsByShard(listing);
  const stats = await pMap(
    plan.shards,
    (s) => upToDate(storage, s, parts.get(s.shard.id), plan.options.output),
    {
      concurrency: 16,
    },
  );
  const done = new Map<string, ShardStats>();
  const todo: RecordedShard[] = [];
  plan.shards.forEach((s, i) => {
    const st = stats[i];
    if (st) done.set(s.shard.id, st);
    else todo.push(s);
  });
  // Nothing to do and nothing changed: the record stays as it was (a frequent schedule's empty
  // firings leave no trace).
  const keep =
    recorded !== null && todo.length === 0 && recorded.inputFingerprint === inputFingerprint(plan.shards);
  const record = keep && recorded ? recorded : runRecordOf(plan, recorded);
  if (!keep) await writeRunRecord(storage, output, record);
  return { record, done, todo, notes };
}
