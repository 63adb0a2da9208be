import { describe, expect, it } from 'vitest';
import { isShardJobProgress, runView } from '../../src/dashboard/run-view.js';
import type { ShardJobProgress } from '../../src/queue/progress.js';
import type { RunProgress } from '../../src/queue/runs.js';

const T0 = 1_700_000_000_000;
const progress = (over: Partial<RunProgress>): RunProgress => ({
  runId: 'r',
  input: 'in',
  output: 'out',
  mode: 'split',
  options: {},
  createdAt: T0,
  shardsTotal: 10,
  shardsSkipped: 0,
  samples: 0,
  ok: 0,
  rejected: 0,
  webKept: 0,
  syntheticKept: 0,
  syntheticTotal: 0,
  shardsDone: 0,
  shardsFailed: 0,
  firstDoneAt: null,
  lastDoneAt: null,
  completedAt: null,
  samplesPerSecond: 0,
  webKeptRatio: 0,
  syntheticKeptRatio: 0,
  failures: [],
  ...over,
});
const active: ShardJobProgress = {
  runId: 'r',
  stage: 'caption',
  shard: 's7',
  pairsDone: 5,
  pairsTotal: 16,
  kept: null,
  pairsPerSecond: 2,
};

describe('runView', () => {
  it('has no ETA before a shard finished, then extrapolates from the finished shards', () => {
    expect(runView(progress({}), [], T0 + 10_000)).toMatchObject({ state: 'running', etaSeconds: null });
    const v = runView(
      progress({ shardsDone: 3, shardsFailed: 1, samples: 64, lastDoneAt: T0 + 30_000 }),
      [active, { ...active, runId: 'other' }],
      T0 + 40_000,
    );
    // 4 of 10 shards in 40 s: 6 more take 60 s.
    expect(v.etaSeconds).toBeCloseTo(60);
    expect(v.pairsPerSecond).toBeCloseTo(64 / 40);
    expect(v.active).toEqual([active]);
  });

  it('a finished run: ETA 0, its rate frozen at its end, failures kept', () => {
    const failures = [{ shardId: 's1', error: 'caption: model exploded' }];
    const done = progress({
      shardsDone: 9,
      shardsFailed: 1,
      samples: 90,
      lastDoneAt: T0 + 9_000,
      completedAt: T0 + 9_000,
      failures,
    });
    const v = runView(done, [], T0 + 3_600_000);
    expect(v).toMatchObject({ state: 'done with failures', etaSeconds: 0, failures });
    expect(v.pairsPerSecond).toBeCloseTo(10);
    expect(runView(progress({ shardsDone: 10, completedAt: T0 + 1 }), []).state).toBe('complete');
  });

  it('reads only shard progress from jobs', () => {
    expect(isShardJobProgress(active)).toBe(true);
    for (const other of [0, 50, null, 'x', { pairsDone: 1 }]) expect(isShardJobProgress(other)).toBe(false);
  });
});
