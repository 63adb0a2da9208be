import { Captioner, type EngineOptions } from '../captioner/captioner.js';
import { errorMessage } from '../core/errors.js';
import type { RecordModels, RunOptions, ShardStats } from '../core/types.js';
import { validateRunOptions } from '../core/validate.js';
import { Filter } from '../filter/filter.js';
import { absoluteLocation, joinUri } from '../io/location.js';
import { sourcePolicyFor } from '../io/sources.js';
import type { Storage } from '../io/storage/storage.js';
import { modelIdOf, readManifest } from '../model/manifest.js';
import { WORK_DIR } from '../output/layout.js';
import { lockOutput } from '../output/lock.js';
import { type PreparedOutput, prepareOutput } from '../output/prepare.js';
import type { RecordedShard } from '../output/run-record.js';
import { removeSummary, type SummaryFile, summaryUri, writeSummary } from '../output/summary.js';
import type { CaptionEngine, FilterEngine } from './engines.js';
import { fingerprintShards } from './fingerprint.js';
import { type PlannedShard, planRun, totalPairs } from './plan.js';
import { Progress } from './progress.js';
import { processShard, type ShardContext } from './shard.js';

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
  /** After each checkpointed batch: where the shard in progress stands (pipeline/shard.ts). */
  onBatch?: ShardContext['onBatch'];
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

/** The ids of the models a run will use, read from their manifests (no model loads). */
async function modelsOf(p: LocalRunParams, planned: readonly PlannedShard[]): Promise<RecordModels | null> {
  if (planned.every((s) => s.shard.human)) return null;
  if (p.engines) return { captioner: p.engines.captioner.modelId, filter: p.engines.filter.modelId };
  const [captioner, filter] = await Promise.all(
    [p.captionerDir, p.filterDir].map(async (dir) => modelIdOf(dir, await readManifest(dir))),
  );
  return { captioner, filter };
}

/**
 * The run's plan (shards, their input fingerprints, the models) checked against the run the
 * output holds (output/prepare.ts): refused when it is another one, otherwise what is left to do.
 */
async function prepareRun(p: LocalRunParams, where: RunLocations): Promise<PreparedOutput> {
  const planned = await planRun(p.storage, {
    ...where,
    shardSize: p.options.input.shardSize,
    columns: p.options.input,
  });
  const prints = await fingerprintShards(
    p.storage,
    planned.map((s) => s.shard),
  );
  return await prepareOutput(
    p.storage,
    where.output,
    {
      ...where,
      options: p.options,
      models: await modelsOf(p, planned),
      shards: planned.map((s) => ({ ...s, fingerprint: prints.get(s.shard.id) as string })),
    },
    { overwrite: p.overwrite },
  );
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
  output: string,
  todo: readonly RecordedShard[],
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
    output,
    signal: p.signal,
    onProgress: (n: number) => progress.add(n),
    ...(p.onBatch ? { onBatch: p.onBatch } : {}),
  };
  for (const s of todo) {
    if (p.signal?.aborted) return { ...out, interrupted: true };
    try {
      out.fresh.push(await processShard(s.shard, { ...ctx, fingerprint: s.fingerprint }));
      progress.shardDone();
    } catch (err) {
      if (p.signal?.aborted) return { ...out, interrupted: true };
      out.failed.push({ shard: s.shard.id, error: errorMessage(err) });
      log(`capfilt: shard ${s.shard.id} failed: ${errorMessage(err)}`);
    }
  }
  return out;
}

function progressFor(p: LocalRunParams, planned: readonly RecordedShard[]): Progress {
  const total = totalPairs(planned);
  return p.progress && p.progress !== 'auto'
    ? new Progress({ mode: p.progress, totalPairs: total, totalShards: planned.length })
    : Progress.auto(total, planned.length);
}

/** Where a run reads and writes, as absolute locations (they are recorded with the output). */
interface RunLocations {
  input: string;
  human: string[];
  output: string;
}

/**
 * `capfilt run` on one machine: lock the output, plan shards and check them against the run the
 * output holds, process what is left one by one with decode prefetch, and write _summary.json
 * once every shard is complete.
 */
export async function runLocal(params: LocalRunParams): Promise<LocalRunResult> {
  validateRunOptions(params.options);
  // The run's sources: its inputs' own folders or buckets, plus what its options add.
  const inputs = [params.input, ...(params.human ?? [])];
  const sources = await sourcePolicyFor(params.storage, inputs, params.options.sources);
  const p: LocalRunParams = { ...params, options: { ...params.options, sources } };
  const t0 = performance.now();
  const log = p.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const where: RunLocations = {
    input: absoluteLocation(p.input),
    human: (p.human ?? []).map(absoluteLocation),
    output: absoluteLocation(p.output),
  };
  // First, before planning or loading anything: an output that is in use or not writable fails here.
  const lock = await lockOutput(where.output);
  if (lock.tookOverFrom) {
    log(`capfilt: took over the lock of ${where.output} from pid ${lock.tookOverFrom.pid}, which is gone`);
  }
  try {
    return await runLocked(p, where, log, t0);
  } finally {
    await lock.release();
  }
}

async function runLocked(
  p: LocalRunParams,
  where: RunLocations,
  log: (line: string) => void,
  t0: number,
): Promise<LocalRunResult> {
  const { record, todo, done, notes } = await prepareRun(p, where);
  for (const note of notes) log(`capfilt: ${note}`);
  await p.storage.removeTemps(where.output);
  const planned = record.shards;
  const progress = progressFor(p, planned);
  for (const s of planned) {
    const stats = done.get(s.shard.id);
    if (stats) progress.skipShard(s.pairs ?? stats.records);
  }
  if (done.size > 0) log(`capfilt: ${done.size} of ${planned.length} shards already complete, skipping them`);
  if (todo.length > 0) await removeSummary(p.storage, where.output);

  const opened = todo.some((s) => !s.shard.human) ? await openEngines(p) : null;
  let outcomes: ShardOutcomes;
  try {
    outcomes = await processShards(p, where.output, todo, opened?.engines ?? null, progress, log);
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
    ? await writeSummary(p.storage, where.output, all, { input: where.input, human: where.human })
    : null;
  // The run holds its output's lock: no other writer can be creating work folders now.
  if (complete) await p.storage.pruneEmpty(joinUri(where.output, WORK_DIR));
  return {
    shards: planned.length,
    processed: fresh.length,
    skipped: planned.length - todo.length,
    failed,
    interrupted,
    summary,
    summaryUri: summaryUri(where.output),
    wallMs: performance.now() - t0,
    modelMs: fresh.reduce((a, s) => a + s.timingsMs.caption + s.timingsMs.filter, 0),
    stats: all,
  };
}
