import type { ShardJobProgress } from '../queue/progress.js';
import type { RunProgress } from '../queue/runs.js';

/** One run as the run page shows it. */
export interface RunView {
  runId: string;
  state: 'running' | 'complete' | 'done with failures';
  mode: RunProgress['mode'];
  input: string;
  output: string;
  createdAt: number;
  shardsTotal: number;
  shardsDone: number;
  shardsFailed: number;
  shardsSkipped: number;
  /** Pairs written (finished shards). */
  pairsDone: number;
  /** Pairs written per second since the run was created (until it completed). */
  pairsPerSecond: number;
  /** Seconds left, extrapolated from the finished shards; null before the first one finishes. */
  etaSeconds: number | null;
  /** Kept web texts per ok pair, and kept synthetic captions per caption. */
  keptRatio: { web: number; synthetic: number };
  failures: { shardId: string; error: string }[];
  /** Shard jobs working now, with their progress inside the shard. */
  active: ShardJobProgress[];
}

export function runView(p: RunProgress, active: ShardJobProgress[], now = Date.now()): RunView {
  const finished = p.shardsDone + p.shardsFailed;
  const end = p.completedAt ?? (finished >= p.shardsTotal && p.lastDoneAt ? p.lastDoneAt : now);
  const elapsedS = Math.max((end - p.createdAt) / 1000, 1e-3);
  const state = finished < p.shardsTotal ? 'running' : p.shardsFailed > 0 ? 'done with failures' : 'complete';
  let etaSeconds: number | null = null;
  if (state !== 'running') etaSeconds = 0;
  else if (finished > 0) etaSeconds = (elapsedS * (p.shardsTotal - finished)) / finished;
  return {
    runId: p.runId,
    state,
    mode: p.mode,
    input: p.input,
    output: p.output,
    createdAt: p.createdAt,
    shardsTotal: p.shardsTotal,
    shardsDone: p.shardsDone,
    shardsFailed: p.shardsFailed,
    shardsSkipped: p.shardsSkipped,
    pairsDone: p.samples,
    pairsPerSecond: p.samples / elapsedS,
    etaSeconds,
    keptRatio: { web: p.webKeptRatio, synthetic: p.syntheticKeptRatio },
    failures: p.failures,
    active: active.filter((a) => a.runId === p.runId),
  };
}

/** A job's progress as a shard job reports it (anything else a job may carry is ignored). */
export function isShardJobProgress(value: unknown): value is ShardJobProgress {
  const v = value as Partial<ShardJobProgress> | null;
  return (
    typeof v === 'object' && v !== null && typeof v.runId === 'string' && typeof v.pairsDone === 'number'
  );
}
