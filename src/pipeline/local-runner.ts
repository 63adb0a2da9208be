import { Captioner, type EngineOptions } from '../captioner/captioner.js';
import { errorMessage } from '../core/errors.js';
import type { RunOptions, ShardStats } from '../core/types.js';
import { validateRunOptions } from '../core/validate.js';
import { Filter } from '../filter/filter.js';
import { sourcePolicyFor } from '../io/sources.js';
import type { Storage } from '../io/storage/storage.js';
import { completedShardStats } from '../output/completion.js';
import { removeSummary, type SummaryFile, summaryUri, writeSummary } from '../output/summary.js';
import type { CaptionEngine, FilterEngine } from './engines.js';
import { type PlannedShard, planRun, totalPairs } from './plan.js';
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
  /** What _summary.json says; null when the run did not complete (failures or interruption). */
  summary: SummaryFile | null;
  summaryUri: string;
  wallMs: number;
  /** Milliseconds inside the captioner and the filter, summed over shards processed now. */
  modelMs: number;
  stats: ShardStats[];
}

type Engines = { captioner: CaptionEngine; filter: FilterEngine };

/** Shards already complete in the output (skipped unless overwrite), and those still to do. */
async function sortOutDone(
  p: LocalRunParams,
  planned: readonly PlannedShard[],
): Promise<{ todo: PlannedShard[]; done: Map<string, ShardStats> }> {
  const todo: PlannedShard[] = [];
  const done = new Map<string, ShardStats>();
  for (const s of planned) {
    const stats = p.overwrite
      ? null
      : await completedShardStats(p.storage, p.output, s.shard.id, p.options.output.compression);
    if (stats) done.set(s.shard.id, stats);
    else todo.push(s);
  }
  return { todo, done };
}

/** The runner's own engines, loaded once; `close` releases them (not engines passed in). */
async function openEngines(p: LocalRunParams): Promise<{ engines: Engines; close(): Promise<void> }> {
  if (p.engines) return { engines: p.engines, close: async () => {} };
  const options = { batchSize: p.options.batchSize, ...p.engine };
  const captioner = await Captioner.load(p.captionerDir, options);
  const filter = await Filter.load(p.filterDir, options).catch(async (err: unknown) => {
    await captioner.close().catch(() => undefined);
    throw err;
  });
  return {
    engines: { captioner, filter },
    async close() {
      await captioner.close().catch(() => undefined);
      await filter.close().catch(() => undefined);
    },
  };
}

interface ShardOutcomes {
  fresh: ShardStats[];
  failed: LocalRunResult['failed'];
  interrupted: boolean;
}

/** One shard after another; a failed shard is logged and the run goes on, an interrupt stops it. */
async function processShards(
  p: LocalRunParams,
  todo: readonly PlannedShard[],
  engines: Engines | null,
  progress: Progress,
  log: (line: string) => void,
): Promise<ShardOutcomes> {
  const out: ShardOutcomes = { fresh: [], failed: [], interrupted: false };
  const ctx = {
    storage: p.storage,
    options: p.options,
    captioner: engines?.captioner ?? null,
    filter: engines?.filter ?? null,
    output: p.output,
    signal: p.signal,
    onProgress: (n: number) => progress.add(n),
  };
  for (const s of todo) {
    if (p.signal?.aborted) return { ...out, interrupted: true };
    try {
      out.fresh.push(await processShard(s.shard, ctx));
      progress.shardDone();
    } catch (err) {
      if (p.signal?.aborted) return { ...out, interrupted: true };
      out.failed.push({ shard: s.shard.id, error: errorMessage(err) });
      log(`capfilt: shard ${s.shard.id} failed: ${errorMessage(err)}`);
    }
  }
  return out;
}

function progressFor(p: LocalRunParams, planned: readonly PlannedShard[]): Progress {
  const total = totalPairs(planned);
  return p.progress && p.progress !== 'auto'
    ? new Progress({ mode: p.progress, totalPairs: total, totalShards: planned.length })
    : Progress.auto(total, planned.length);
}

/**
 * `capfilt run` on one machine: plan shards, skip completed ones (unless overwrite), process the
 * rest one by one with decode prefetch, and write _summary.json once every shard is complete.
 */
export async function runLocal(params: LocalRunParams): Promise<LocalRunResult> {
  validateRunOptions(params.options);
  // The run's sources: its inputs' own folders or buckets, plus what its options add.
  const inputs = [params.input, ...(params.human ?? [])];
  const sources = await sourcePolicyFor(params.storage, inputs, params.options.sources);
  const p: LocalRunParams = { ...params, options: { ...params.options, sources } };
  const t0 = performance.now();
  const log = p.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const planned = await planRun(p.storage, {
    ...p,
    shardSize: p.options.input.shardSize,
    columns: p.options.input,
  });
  await p.storage.removeTemps(p.output);
  const { todo, done } = await sortOutDone(p, planned);
  const progress = progressFor(p, planned);
  for (const s of planned) {
    const stats = done.get(s.shard.id);
    if (stats) progress.skipShard(s.pairs ?? stats.records);
  }
  if (done.size > 0) log(`capfilt: ${done.size} of ${planned.length} shards already complete, skipping them`);
  if (todo.length > 0) await removeSummary(p.storage, p.output);

  const opened = todo.some((s) => !s.shard.human) ? await openEngines(p) : null;
  let outcomes: ShardOutcomes;
  try {
    outcomes = await processShards(p, todo, opened?.engines ?? null, progress, log);
  } finally {
    progress.finish();
    await opened?.close();
  }

  const { fresh, failed, interrupted } = outcomes;
  for (const st of fresh) done.set(st.shard.id, st);
  // In plan order, as _summary.json lists the shard ids.
  const all = planned.flatMap((s) => done.get(s.shard.id) ?? []);
  const complete = !interrupted && failed.length === 0 && all.length === planned.length;
  const summary = complete
    ? await writeSummary(p.storage, p.output, all, { input: p.input, human: p.human })
    : null;
  return {
    shards: planned.length,
    processed: fresh.length,
    skipped: planned.length - todo.length,
    failed,
    interrupted,
    summary,
    summaryUri: summaryUri(p.output),
    wallMs: performance.now() - t0,
    modelMs: fresh.reduce((a, s) => a + s.timingsMs.caption + s.timingsMs.filter, 0),
    stats: all,
  };
}
