/**
 * Job payloads and run records are untrusted input: anyone who can write to Redis, or add a job
 * from the dashboard, can put any JSON there. A worker checks each against its schema before it
 * reads or writes anything: ids that cannot form a path, a shard inside the inputs its run
 * recorded, the run's options through the entry validation (with its upper bounds), and stage
 * results that point only at the spill file their own job would write. A payload that fails is an
 * InvalidJobError: its job fails once, without retries, saying why.
 */
import { InvalidJobError, UsageError } from '../core/errors.js';
import type { InputFormat, RunOptions, ShardRef } from '../core/types.js';
import { ID_PATTERN, validateRunOptions } from '../core/validate.js';
import { isInside } from '../io/location.js';
import type { ProduceJobData, ShardJobData } from './produce.js';
import type { RunRecord } from './runs.js';
import type { Carried } from './spill.js';

const FORMATS: readonly InputFormat[] = ['jsonl', 'csv', 'tsv', 'parquet', 'webdataset', 'folder'];
const MAX_URI = 4096;

type Fields = Record<string, unknown>;

const isObject = (v: unknown): v is Fields => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is string => typeof v === 'string' && ID_PATTERN.test(v);
const isUri = (v: unknown): v is string => typeof v === 'string' && v !== '' && v.length <= MAX_URI;
const isRow = (v: unknown) => v === undefined || (Number.isSafeInteger(v) && (v as number) >= 0);
const isUriList = (v: unknown) => v === undefined || (Array.isArray(v) && v.length <= 64 && v.every(isUri));

function described(v: unknown): string {
  if (typeof v === 'string') return `the string ${JSON.stringify(v.slice(0, 60))}`;
  return Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v;
}

function demand(checks: [ok: boolean, what: string][], job: string): void {
  const failed = checks.filter(([ok]) => !ok).map(([, what]) => what);
  if (failed.length > 0) throw new InvalidJobError(`invalid ${job}: ${failed.join('; ')}`);
}

function checkShardRef(shard: unknown, job: string): asserts shard is ShardRef {
  if (!isObject(shard))
    throw new InvalidJobError(`invalid ${job}: shard must be an object (got ${described(shard)})`);
  demand(
    [
      [isId(shard.id), `shard id must match ${ID_PATTERN.source} (got ${described(shard.id)})`],
      [FORMATS.includes(shard.format as InputFormat), `shard format must be one of ${FORMATS.join(', ')}`],
      [isUri(shard.uri), `shard uri must be a location of at most ${MAX_URI} characters`],
      [isRow(shard.rowStart) && isRow(shard.rowEnd), 'shard rows must be integers >= 0'],
      [
        shard.rowStart === undefined ||
          shard.rowEnd === undefined ||
          (shard.rowStart as number) <= (shard.rowEnd as number),
        'shard rowStart must not exceed rowEnd',
      ],
      [shard.human === undefined || typeof shard.human === 'boolean', 'shard human must be true or false'],
    ],
    job,
  );
}

/** A shard job's data, checked for shape: a run id, a shard reference and its input fingerprint. */
export function parseShardJob(data: unknown, job: string): ShardJobData {
  if (!isObject(data))
    throw new InvalidJobError(`invalid ${job}: job data must be an object (got ${described(data)})`);
  demand(
    [
      [isId(data.runId), `runId must match ${ID_PATTERN.source} (got ${described(data.runId)})`],
      [
        typeof data.fingerprint === 'string' && data.fingerprint.length <= 1024,
        'fingerprint must be a string',
      ],
    ],
    job,
  );
  checkShardRef(data.shard, job);
  return data as unknown as ShardJobData;
}

/** The (run, shard) a job names, when both are well-formed ids; null otherwise (nothing is recorded then). */
export function shardIdsOf(data: unknown): { runId: string; shardId: string } | null {
  if (!isObject(data) || !isObject(data.shard) || !isId(data.runId) || !isId(data.shard.id)) return null;
  return { runId: data.runId, shardId: data.shard.id };
}

/** A run record as the worker will use it: well-formed, with options that pass the entry validation. */
export function checkRunRecord(run: RunRecord<unknown>): RunRecord<RunOptions> {
  const job = `run record ${run.runId}`;
  demand(
    [
      [isId(run.runId), `runId must match ${ID_PATTERN.source}`],
      [isUri(run.input), 'input must be a location'],
      [isUri(run.output), 'output must be a location'],
      [isUriList(run.human), 'human must be a list of locations'],
    ],
    job,
  );
  try {
    validateRunOptions(run.options as RunOptions);
  } catch (err) {
    if (err instanceof UsageError) throw new InvalidJobError(`invalid ${job}: ${err.message}`);
    throw err;
  }
  return run as RunRecord<RunOptions>;
}

/**
 * The shard must lie inside the inputs its run recorded (the input for a data shard, a human
 * input for a human one): a job cannot point a worker at any other file.
 */
export function checkShardInRun(data: ShardJobData, run: RunRecord<RunOptions>, job: string): void {
  if (data.runId !== run.runId)
    throw new InvalidJobError(`invalid ${job}: run ${data.runId} is not ${run.runId}`);
  const roots = data.shard.human ? (run.human ?? []) : [run.input];
  if (!roots.some((root) => isInside(data.shard.uri, root))) {
    throw new InvalidJobError(
      `invalid ${job}: shard ${data.shard.id} reads ${data.shard.uri}, outside the run's ${data.shard.human ? 'human inputs' : 'input'} ${roots.join(', ') || '(none)'}`,
    );
  }
}

/** A stage result as carried between jobs: inline, or spilled to exactly the file its stage writes. */
export function checkCarried<T>(value: unknown, expectedSpill: string, job: string): Carried<T> {
  if (isObject(value) && 'inline' in value) return value as Carried<T>;
  if (isObject(value) && value.spilled === expectedSpill) return value as Carried<T>;
  throw new InvalidJobError(
    `invalid ${job}: a stage result must be inline or spilled to ${expectedSpill} (got ${isObject(value) ? described(value.spilled) : described(value)})`,
  );
}

/** A produce job's data (a schedule's firing): the locations, mode and ids checked; produceRun validates the options. */
export function parseProduceJob(data: unknown): ProduceJobData {
  const job = 'produce job';
  if (!isObject(data))
    throw new InvalidJobError(`invalid ${job}: job data must be an object (got ${described(data)})`);
  const optionalId = (v: unknown) => v === undefined || isId(v);
  demand(
    [
      [isUri(data.input), 'input must be a location'],
      [isUri(data.output), 'output must be a location'],
      [data.mode === 'split' || data.mode === 'fused', 'mode must be split or fused'],
      [isObject(data.options), 'options must be an object'],
      [
        optionalId(data.runPrefix) && optionalId(data.scheduleId),
        `runPrefix and scheduleId must match ${ID_PATTERN.source}`,
      ],
      [isUriList(data.human), 'human must be a list of locations'],
      [
        data.overwrite === undefined || typeof data.overwrite === 'boolean',
        'overwrite must be true or false',
      ],
    ],
    job,
  );
  return data as unknown as ProduceJobData;
}
