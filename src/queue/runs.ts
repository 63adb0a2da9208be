import type { Redis } from 'ioredis';
import { fingerprintsKey, runKey, runsIndexKey } from './names.js';

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

/**
 * Count a shard once even if BullMQ delivers its write job twice (stall recovery): the shard id
 * enters the run's done-set atomically with the counter increments.
 * KEYS: run hash, done set, failures hash. ARGV: shardId, now, then counter name/value pairs.
 */
const MARK_DONE = `
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSETNX', KEYS[1], 'firstDoneAt', ARGV[2])
redis.call('HSET', KEYS[1], 'lastDoneAt', ARGV[2])
local total = tonumber(redis.call('HGET', KEYS[1], 'shardsTotal') or '0')
local failed = redis.call('HLEN', KEYS[3])
if redis.call('SCARD', KEYS[2]) + failed >= total and redis.call('HSETNX', KEYS[1], 'allShardsAt', ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[2], DONE_SET_TTL)
  -- A clean run is complete once its _summary.json is written (markCompleted); a run with
  -- failed shards writes none and is complete now.
  if failed == 0 then return 2 end
  redis.call('HSETNX', KEYS[1], 'completedAt', ARGV[2])
end
return 1
`.replace('DONE_SET_TTL', String(DONE_SET_TTL_S));

/**
 * A shard failed for good, unless a concurrent delivery of it was counted done: checked and
 * recorded in one step, so a shard is never both. A run with a failed shard writes no summary and
 * is complete once every shard is done or failed.
 * KEYS: run hash, done set, failures hash. ARGV: shardId, error, now.
 */
const MARK_FAILED = `
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local total = tonumber(redis.call('HGET', KEYS[1], 'shardsTotal') or '0')
if redis.call('SCARD', KEYS[2]) + redis.call('HLEN', KEYS[3]) >= total and redis.call('HSETNX', KEYS[1], 'completedAt', ARGV[3]) == 1 then
  redis.call('EXPIRE', KEYS[2], DONE_SET_TTL)
end
return 1
`.replace('DONE_SET_TTL', String(DONE_SET_TTL_S));

export class RunStore {
  constructor(
    private readonly redis: Redis,
    readonly prefix: string,
  ) {}

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
    const args: (string | number)[] = [shardId, now];
    for (const c of COUNTERS) args.push(c, Math.round(summary[c]));
    const added = await this.redis.eval(MARK_DONE, 3, key, `${key}:done`, `${key}:failed`, ...args);
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
    await this.redis.eval(
      MARK_FAILED,
      3,
      key,
      `${key}:done`,
      `${key}:failed`,
      shardId,
      error.slice(0, 2_000),
      now,
    );
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

  /** Fingerprints of input shards as last written to `output` (for incremental re-runs). */
  async fingerprints(output: string): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(fingerprintsKey(this.prefix, output))));
  }

  async recordFingerprint(output: string, shardId: string, fingerprint: string): Promise<void> {
    await this.redis.hset(fingerprintsKey(this.prefix, output), shardId, fingerprint);
  }
}
