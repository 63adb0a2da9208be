import { Captioner, type EngineOptions } from '../captioner/captioner.js';
import { errorMessage, NotFoundError, ShardError } from '../core/errors.js';
import type { RunOptions, ShardStats } from '../core/types.js';
import { validateRunOptions } from '../core/validate.js';
import { Filter } from '../filter/filter.js';
import { joinUri } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { SUMMARY_NAME, shardOutputNames } from '../output/shard-writer.js';
import { type RunSummary, summarize } from '../output/stats.js';
import type { CaptionEngine, FilterEngine } from './engines.js';
import { type PlannedShard, planShards } from './plan.js';
import { Progress } from './progress.js';
import { processShard } from './shard.js';

export interface LocalRunParams {
  input: string;
  output: string;
  /** Human-annotated manifests/folders: added to the output unfiltered, marked human. */
  human?: string[];
  captionerDir: string;
  filterDir: string;
  engine?: EngineOptions;
  options: RunOptions;
  storage: Storage;
  /** Redo shards whose completion marker exists. */
  overwrite?: boolean;
  progress?: 'auto' | 'tty' | 'plain' | 'none';
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Already loaded engines (benchmarks, tests); the runner then does not load or close them. */
  engines?: { captioner: CaptionEngine; filter: FilterEngine };
}

export interface LocalRunResult {
  shards: number;
  processed: number;
  skipped: number;
  failed: { shard: string; error: string }[];
  interrupted: boolean;
  /** Null when the run did not complete (failures or interruption). */
  summary: RunSummary | null;
  summaryUri: string;
  wallMs: number;
  /** Milliseconds inside the captioner and the filter, summed over shards processed now. */
  modelMs: number;
  stats: ShardStats[];
}

/** A shard's completion marker, or null when it is absent or unreadable (the shard is then redone). */
async function readStats(storage: Storage, uri: string): Promise<ShardStats | null> {
  let body: Buffer;
  try {
    body = await storage.read(uri);
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
  try {
    return JSON.parse(body.toString('utf8')) as ShardStats;
  } catch {
    return null;
  }
}

/**
 * `capfilt run` on one machine: plan shards, skip completed ones (unless overwrite), process the
 * rest one by one with decode prefetch, and write _summary.json once every shard is complete.
 */
export async function runLocal(p: LocalRunParams): Promise<LocalRunResult> {
  validateRunOptions(p.options);
  const t0 = performance.now();
  const log = p.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const planned: PlannedShard[] = await planShards(p.storage, p.input, {
    shardSize: p.options.input.shardSize,
  });
  for (const h of p.human ?? []) {
    planned.push(...(await planShards(p.storage, h, { shardSize: p.options.input.shardSize, human: true })));
  }
  const ids = new Set<string>();
  for (const { shard } of planned) {
    if (ids.has(shard.id)) throw new ShardError(shard.id, 'two inputs map to the same shard id; rename one');
    ids.add(shard.id);
  }
  // Temp files of writes that a killed process never committed.
  await p.storage.removeTemps(p.output);

  const compression = p.options.output.compression;
  const todo: PlannedShard[] = [];
  const done: ShardStats[] = [];
  const totalPairs = planned.every((s) => s.pairs !== null)
    ? planned.reduce((a, s) => a + (s.pairs ?? 0), 0)
    : null;
  const progress =
    p.progress && p.progress !== 'auto'
      ? new Progress({ mode: p.progress, totalPairs, totalShards: planned.length })
      : Progress.auto(totalPairs, planned.length);
  for (const s of planned) {
    const marker = shardOutputNames(p.output, s.shard.id, compression).stats;
    const existing = p.overwrite ? null : await readStats(p.storage, marker);
    if (existing) {
      done.push(existing);
      progress.skipShard(s.pairs ?? existing.records);
    } else {
      todo.push(s);
    }
  }
  if (done.length > 0)
    log(`capfilt: ${done.length} of ${planned.length} shards already complete, skipping them`);
  const summaryUri = joinUri(p.output, SUMMARY_NAME);
  // _summary.json vouches for a complete run: one from an earlier run must not outlive new work.
  if (todo.length > 0) await p.storage.delete(summaryUri).catch(() => undefined);

  const needModels = todo.some((s) => !s.shard.human);
  let engines = p.engines;
  const owned: { close(): Promise<void> }[] = [];
  if (!engines && needModels) {
    const captioner = await Captioner.load(p.captionerDir, { batchSize: p.options.batchSize, ...p.engine });
    const filter = await Filter.load(p.filterDir, { batchSize: p.options.batchSize, ...p.engine }).catch(
      async (err: unknown) => {
        // The close in the finally below is not reached yet: release the captioner's sessions here.
        await captioner.close().catch(() => undefined);
        throw err;
      },
    );
    owned.push(captioner, filter);
    engines = { captioner, filter };
  }

  const failed: LocalRunResult['failed'] = [];
  const fresh: ShardStats[] = [];
  let interrupted = false;
  try {
    for (const s of todo) {
      if (p.signal?.aborted) {
        interrupted = true;
        break;
      }
      try {
        const stats = await processShard(s.shard, {
          storage: p.storage,
          options: p.options,
          captioner: engines?.captioner ?? null,
          filter: engines?.filter ?? null,
          output: p.output,
          signal: p.signal,
          onProgress: (n) => progress.add(n),
        });
        fresh.push(stats);
        progress.shardDone();
      } catch (err) {
        if (p.signal?.aborted) {
          interrupted = true;
          break;
        }
        failed.push({ shard: s.shard.id, error: errorMessage(err) });
        log(`capfilt: shard ${s.shard.id} failed: ${errorMessage(err)}`);
      }
    }
  } finally {
    progress.finish();
    for (const e of owned) await e.close().catch(() => undefined);
  }

  const all = [...done, ...fresh];
  const complete = !interrupted && failed.length === 0 && all.length === planned.length;
  let summary: RunSummary | null = null;
  if (complete) {
    summary = summarize(all);
    const body = {
      ...summary,
      input: p.input,
      human: p.human ?? [],
      output: p.output,
      shardIds: planned.map((s) => s.shard.id),
      completedAt: new Date().toISOString(),
    };
    await p.storage.write(summaryUri, `${JSON.stringify(body, null, 2)}\n`);
  }
  const modelMs = fresh.reduce((a, s) => a + s.timingsMs.caption + s.timingsMs.filter, 0);
  return {
    shards: planned.length,
    processed: fresh.length,
    skipped: done.length,
    failed,
    interrupted,
    summary,
    summaryUri,
    wallMs: performance.now() - t0,
    modelMs,
    stats: all,
  };
}
