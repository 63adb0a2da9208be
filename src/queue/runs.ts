import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { runKey, runsIndexKey } from './names.js';

/** How a run's shards move: caption → filter → write, or fused (caption+filter) → write. */
export type RunMode = 'split' | 'fused';

/** What `produce` records about a run, so every worker applies the same options. */
export interface RunRecord<Options = unknown> {
  runId: string;
  input: string;
  output: string;
  mode: RunMode;
  /** The run's options (one RunOptions value), exactly as produce parsed them. */
  options: Options;
  createdAt: number;
  /** Shards enqueued by this run (skipped ones excluded). */
  shardsTotal: number;
  /** Shards found complete and unchanged in the output, so not enqueued. */
  shardsSkipped: number;
  /** Pairs in the enqueued shards when known before reading them (null with tars): the ETA's total. */
  pairsTotal?: number | null;
  scheduleId?: string;
  /** Human-annotated inputs added unfiltered. */
  human?: string[];
}

/** What a finished shard adds to its run's counters. */
export interface ShardSummary {
  samples: number;
  ok: number;
  rejected: number;
  webKept: number;
  syntheticKept: number;
  syntheticTotal: number;
}

/** The run's record and its counters, summed over its finished shards. */
export interface RunProgress extends RunRecord, ShardSummary {
  shardsDone: number;
  shardsFailed: number;
  firstDoneAt: number | null;
  lastDoneAt: number | null;
  completedAt: number | null;
  /** Samples per second between the run's creation and its last finished shard. */
  samplesPerSecond: number;
  /** Kept web texts per ok sample. */
  webKeptRatio: number;
  /** Kept synthetic captions per synthetic caption. */
  syntheticKeptRatio: number;
  failures: { shardId: string; error: string }[];
}

const COUNTERS = ['samples', 'ok', 'rejected', 'webKept', 'syntheticKept', 'syntheticTotal'] as const;

/**
 * Once a run is complete its set of done shard ids (the bulk of a run's keys on a 100k-shard run)
 * is only kept a week, for late redeliveries; the counters and failures stay.
 */
const DONE_SET_TTL_S = 7 * 24 * 3600;

/** The run's Lua scripts (src/queue/lua), registered with defineCommand: sent once, then run by SHA. */
const SCRIPTS = {
  capfiltMarkShardDone: readFileSync(new URL('./lua/mark-done.lua', import.meta.url), 'utf8'),
  capfiltMarkShardFailed: readFileSync(new URL('./lua/mark-failed.lua', import.meta.url), 'utf8'),
};

type ScriptArgs = (string | number)[];
interface RunCommands {
  capfiltMarkShardDone(...keysThenArgs: ScriptArgs): Promise<number>;
  capfiltMarkShardFailed(...keysThenArgs: ScriptArgs): Promise<number>;
}

function withRunCommands(redis: Redis): Redis & RunCommands {
  for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(name, { numberOfKeys: 3, lua });
  return redis as Redis & RunCommands;
}

export class RunStore {
  private readonly redis: Redis & RunCommands;

  constructor(
    redis: Redis,
    readonly prefix: string,
  ) {
    this.redis = withRunCommands(redis);
  }

  async create(record: RunRecord): Promise<void> {
    const key = runKey(this.prefix, record.runId);
    const fields: Record<string, string> = {
      runId: record.runId,
      input: record.input,
      output: record.output,
      mode: record.mode,
      options: JSON.stringify(record.options),
      createdAt: String(record.createdAt),
      shardsTotal: String(record.shardsTotal),
      shardsSkipped: String(record.shardsSkipped),
    };
    if (record.scheduleId) fields.scheduleId = record.scheduleId;
    if (record.pairsTotal != null) fields.pairsTotal = String(record.pairsTotal);
    if (record.human?.length) fields.human = JSON.stringify(record.human);
    const multi = this.redis
      .multi()
      .hset(key, fields)
      .zadd(runsIndexKey(this.prefix), record.createdAt, record.runId);
    if (record.shardsTotal === 0) multi.hset(key, 'completedAt', String(record.createdAt));
    await multi.exec();
  }

  async get<Options = unknown>(runId: string): Promise<RunRecord<Options> | null> {
    const h = await this.redis.hgetall(runKey(this.prefix, runId));
    if (!h.runId) return null;
    return {
      runId: h.runId,
      input: h.input,
      output: h.output,
      mode: h.mode === 'fused' ? 'fused' : 'split',
      options: JSON.parse(h.options) as Options,
      createdAt: Number(h.createdAt),
      shardsTotal: Number(h.shardsTotal),
      shardsSkipped: Number(h.shardsSkipped),
      ...(h.scheduleId ? { scheduleId: h.scheduleId } : {}),
      pairsTotal: h.pairsTotal ? Number(h.pairsTotal) : null,
      ...(h.human ? { human: JSON.parse(h.human) as string[] } : {}),
    };
  }

  /** Newest first. */
  async list(limit = 50): Promise<string[]> {
    return await this.redis.zrevrange(runsIndexKey(this.prefix), 0, limit - 1);
  }

  /**
   * 'duplicate' when the shard had already been counted; 'completed' when it was the run's last
   * shard and none failed (the caller then writes the dataset summary, exactly once).
   */
  async markShardDone(
    runId: string,
    shardId: string,
    summary: ShardSummary,
    now = Date.now(),
  ): Promise<'counted' | 'duplicate' | 'completed'> {
    const key = runKey(this.prefix, runId);
    const args: ScriptArgs = [shardId, now, DONE_SET_TTL_S];
    for (const c of COUNTERS) args.push(c, Math.round(summary[c]));
    const added = await this.redis.capfiltMarkShardDone(key, `${key}:done`, `${key}:failed`, ...args);
    return added === 2 ? 'completed' : added === 1 ? 'counted' : 'duplicate';
  }

  /** The run's `_summary.json` is written: the run is complete. */
  async markCompleted(runId: string, now = Date.now()): Promise<void> {
    await this.redis.hsetnx(runKey(this.prefix, runId), 'completedAt', String(now));
  }

  /**
   * Every shard is done and none failed, but no summary was written (the worker that counted the
   * last shard died before writing it): a redelivered write job finishes the run.
   */
  async summaryPending(runId: string): Promise<boolean> {
    const key = runKey(this.prefix, runId);
    const [allShardsAt, completedAt, failed] = await Promise.all([
      this.redis.hget(key, 'allShardsAt'),
      this.redis.hget(key, 'completedAt'),
      this.redis.hlen(`${key}:failed`),
    ]);
    return allShardsAt !== null && completedAt === null && failed === 0;
  }

  /** A shard whose job failed for good (retries exhausted or a permanent error). */
  async markShardFailed(runId: string, shardId: string, error: string, now = Date.now()): Promise<void> {
    const key = runKey(this.prefix, runId);
    await this.redis.capfiltMarkShardFailed(
      key,
      `${key}:done`,
      `${key}:failed`,
      shardId,
      error.slice(0, 2_000),
      now,
      DONE_SET_TTL_S,
    );
  }

  /**
   * Failed shards about to run again (capfilt retry): no longer failed, and the run no longer
   * complete, so that it completes (and writes its summary) when they are done.
   */
  async reopenShards(runId: string, shardIds: readonly string[]): Promise<void> {
    if (shardIds.length === 0) return;
    const key = runKey(this.prefix, runId);
    await this.redis
      .multi()
      .hdel(`${key}:failed`, ...shardIds)
      .hdel(key, 'completedAt', 'allShardsAt')
      .persist(`${key}:done`)
      .exec();
  }

  /** Progress of the newest runs, newest first. */
  async recent(limit = 50): Promise<RunProgress[]> {
    const all = await Promise.all((await this.list(limit)).map((id) => this.progress(id)));
    return all.filter((p): p is RunProgress => p !== null);
  }

  async isShardDone(runId: string, shardId: string): Promise<boolean> {
    return (await this.redis.sismember(`${runKey(this.prefix, runId)}:done`, shardId)) === 1;
  }

  async progress(runId: string): Promise<RunProgress | null> {
    const record = await this.get(runId);
    if (!record) return null;
    const key = runKey(this.prefix, runId);
    const [h, done, failures] = await Promise.all([
      this.redis.hgetall(key),
      this.redis.scard(`${key}:done`),
      this.redis.hgetall(`${key}:failed`),
    ]);
    const n = (field: string) => Number(h[field] ?? 0);
    const lastDoneAt = h.lastDoneAt ? Number(h.lastDoneAt) : null;
    const elapsed = lastDoneAt ? (lastDoneAt - record.createdAt) / 1000 : 0;
    return {
      ...record,
      shardsDone: done,
      shardsFailed: Object.keys(failures).length,
      samples: n('samples'),
      ok: n('ok'),
      rejected: n('rejected'),
      webKept: n('webKept'),
      syntheticKept: n('syntheticKept'),
      syntheticTotal: n('syntheticTotal'),
      firstDoneAt: h.firstDoneAt ? Number(h.firstDoneAt) : null,
      lastDoneAt,
      completedAt: h.completedAt ? Number(h.completedAt) : null,
      samplesPerSecond: elapsed > 0 ? n('samples') / elapsed : 0,
      webKeptRatio: n('ok') > 0 ? n('webKept') / n('ok') : 0,
      syntheticKeptRatio: n('syntheticTotal') > 0 ? n('syntheticKept') / n('syntheticTotal') : 0,
      failures: Object.entries(failures).map(([shardId, error]) => ({ shardId, error })),
    };
  }
}
