/**
 * `_capfilt-run.json`: the run an output folder holds. Its input, the options that decide its
 * records, the models, and the shard plan with each shard's input fingerprint. A rerun into the
 * folder is checked against it (output/prepare.ts) so that two runs never mix in one output, and
 * export, refilter and the queue's summary read only the shards it lists.
 */
import { createHash } from 'node:crypto';
import { NotFoundError, UsageError } from '../core/errors.js';
import { type DecidingValue, decidingOptions, REFILTER_FLAGS } from '../core/options.js';
import type { RecordModels, RunOptions, ShardRef } from '../core/types.js';
import { joinUri } from '../io/location.js';
import type { Storage } from '../io/storage/storage.js';
import { RUN_RECORD_NAME } from './layout.js';

export const RUN_RECORD_FORMAT = 'capfilt-run/1';

/** One shard of the plan: what it reads, and the fingerprint of its input when planned. */
export interface RecordedShard {
  shard: ShardRef;
  /** Pairs it holds when known before reading (tars are counted by reading them). */
  pairs: number | null;
  fingerprint: string;
}

/** What a run into an output is: compared with the record the output already holds. */
export interface OutputPlan {
  /** Absolute input location (for a refiltered output: the output it was re-decided from). */
  input: string;
  human: string[];
  options: RunOptions;
  /** Model ids when known before the run (local runs); a queue run's workers load their own. */
  models: RecordModels | null;
  shards: RecordedShard[];
  /** The distributed run that last planned into this output. */
  runId?: string | null;
  refilteredFrom?: string | null;
}

/** The body of `_capfilt-run.json`. */
export interface RunRecordFile extends Required<OutputPlan> {
  format: typeof RUN_RECORD_FORMAT;
  /** The deciding options by flag (core/options.ts decidingOptions), as compared on a rerun. */
  deciding: Record<string, DecidingValue>;
  /** Digest of every shard id and fingerprint: equal iff the planned input is unchanged. */
  inputFingerprint: string;
  createdAt: string;
  updatedAt: string;
}

export function runRecordUri(output: string): string {
  return joinUri(output, RUN_RECORD_NAME);
}

export function inputFingerprint(shards: readonly RecordedShard[]): string {
  const h = createHash('sha256');
  for (const s of shards) h.update(`${s.shard.id}\0${s.fingerprint}\n`);
  return h.digest('hex').slice(0, 32);
}

/** A small file of an output (record, marker) parsed as JSON; null when it is not there. */
export async function readJsonFile(storage: Storage, uri: string): Promise<{ value: unknown } | null> {
  let body: Buffer;
  try {
    body = await storage.read(uri);
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
  try {
    return { value: JSON.parse(body.toString('utf8')) };
  } catch {
    return { value: undefined };
  }
}

/** The output's run record, or null when it has none. A file that is not one is refused. */
export async function readRunRecord(storage: Storage, output: string): Promise<RunRecordFile | null> {
  const uri = runRecordUri(output);
  const file = await readJsonFile(storage, uri);
  if (!file) return null;
  const record = file.value as RunRecordFile | undefined;
  if (record?.format === RUN_RECORD_FORMAT && Array.isArray(record.shards)) return record;
  throw new UsageError(`${uri} is not a capfilt run record: use --overwrite or another output`);
}

export function runRecordOf(plan: OutputPlan, previous: RunRecordFile | null): RunRecordFile {
  const now = new Date().toISOString();
  return {
    format: RUN_RECORD_FORMAT,
    input: plan.input,
    human: plan.human,
    options: plan.options,
    deciding: decidingOptions(plan.options),
    models: plan.models,
    refilteredFrom: plan.refilteredFrom ?? null,
    runId: plan.runId ?? null,
    inputFingerprint: inputFingerprint(plan.shards),
    shards: plan.shards,
    createdAt: previous?.createdAt ?? now,
    updatedAt: now,
  };
}

export async function writeRunRecord(storage: Storage, output: string, record: RunRecordFile): Promise<void> {
  await storage.write(runRecordUri(output), `${JSON.stringify(record, null, 2)}\n`);
}

const show = (v: unknown) => JSON.stringify(v);

/** One way a plan is another run than the recorded one. */
export interface RunDifference {
  /** The flag, or `input` / `<kind> model`. */
  name: string;
  there: string;
  now: string;
  /** The new value of a deciding option (for the refilter hint). */
  value?: DecidingValue;
}

/**
 * What makes `plan` another run than the one recorded: another input, other human inputs, other
 * deciding options or other models. A change of the input's contents is not a difference: it is
 * what an incremental rerun is for (changed shards are redone, see output/prepare.ts).
 */
export function runDifferences(recorded: RunRecordFile, plan: OutputPlan): RunDifference[] {
  const out: RunDifference[] = [];
  if (recorded.input !== plan.input) out.push({ name: 'input', there: recorded.input, now: plan.input });
  if (show(recorded.human) !== show(plan.human)) {
    out.push({ name: '--human', there: show(recorded.human), now: show(plan.human) });
  }
  for (const [flag, value] of Object.entries(decidingOptions(plan.options))) {
    const was = recorded.deciding[flag];
    if (flag in recorded.deciding && was !== value)
      out.push({ name: flag, there: show(was), now: show(value), value });
  }
  for (const kind of ['captioner', 'filter'] as const) {
    const was = recorded.models?.[kind];
    const is = plan.models?.[kind];
    if (was && is && was !== is) out.push({ name: `${kind} model`, there: was, now: is });
  }
  return out;
}

/** The refusal of a rerun that is another run: what differs, and the ways out. */
export function anotherRunError(output: string, differences: readonly RunDifference[]): UsageError {
  const what = differences.map((d) => `${d.name} ${d.there} there, ${d.now} now`).join('; ');
  const refilter = differences.every((d) => REFILTER_FLAGS.includes(d.name))
    ? '; or keep it and re-decide from its stored scores, without a model: capfilt refilter ' +
      `--input ${output} --output <new folder> ${differences.map((d) => `${d.name} ${d.value}`).join(' ')}`
    : '';
  return new UsageError(
    `${output} holds another run (${runRecordUri(output)}): ${what}. ` +
      `Use --overwrite to replace it, or another --output${refilter}`,
  );
}
