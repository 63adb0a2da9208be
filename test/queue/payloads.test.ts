import { describe, expect, it } from 'vitest';
import { InvalidJobError } from '../../src/core/errors.js';
import { runOptions } from '../../src/core/options.js';
import {
  checkCarried,
  checkRunRecord,
  checkShardInRun,
  parseProduceJob,
  parseShardJob,
  shardIdsOf,
} from '../../src/queue/payloads.js';
import type { RunRecord } from '../../src/queue/runs.js';
import { spillUri } from '../../src/queue/spill.js';

const shard = { id: 'm-0-8', format: 'jsonl', uri: '/data/in/m.jsonl', rowStart: 0, rowEnd: 8 };
const run = (over: Partial<RunRecord> = {}): RunRecord => ({
  runId: 'r1',
  input: '/data/in',
  output: '/data/out',
  mode: 'split',
  options: runOptions(),
  createdAt: 0,
  shardsTotal: 1,
  shardsSkipped: 0,
  ...over,
});
const invalid = (work: () => unknown): string => {
  try {
    work();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidJobError);
    return (err as Error).message;
  }
  return 'valid';
};

describe('job payloads are checked before a worker acts on them', () => {
  it('takes a well-formed shard job and refuses every malformed field with its reason', () => {
    expect(parseShardJob({ runId: 'r1', shard, fingerprint: 'x' }, 'caption job')).toMatchObject({
      runId: 'r1',
    });
    expect(invalid(() => parseShardJob('a string', 'caption job'))).toBe(
      'invalid caption job: job data must be an object (got the string "a string")',
    );
    expect(invalid(() => parseShardJob({ runId: '../x', shard, fingerprint: '' }, 'j'))).toMatch(
      /^invalid j: runId must match/,
    );
    expect(
      invalid(() =>
        parseShardJob({ runId: 'r1', shard: { ...shard, id: 'a/../../b' }, fingerprint: '' }, 'j'),
      ),
    ).toMatch(/shard id must match/);
    expect(
      invalid(() => parseShardJob({ runId: 'r1', shard: { ...shard, format: 'exe' }, fingerprint: '' }, 'j')),
    ).toMatch(/shard format must be one of/);
    expect(
      invalid(() =>
        parseShardJob({ runId: 'r1', shard: { ...shard, rowStart: 9, rowEnd: 1 }, fingerprint: '' }, 'j'),
      ),
    ).toBe('invalid j: shard rowStart must not exceed rowEnd');
    expect(
      invalid(() =>
        parseShardJob({ runId: 'r1', shard: { ...shard, uri: 'x'.repeat(5000) }, fingerprint: '' }, 'j'),
      ),
    ).toMatch(/shard uri must be a location/);
  });

  it('records a failure only under ids that cannot form a key or a path', () => {
    expect(shardIdsOf({ runId: 'r1', shard })).toEqual({ runId: 'r1', shardId: 'm-0-8' });
    expect(shardIdsOf({ runId: 'r1', shard: { id: '../x' } })).toBe(null);
    expect(shardIdsOf('text')).toBe(null);
  });

  it('keeps a shard inside the inputs its run recorded', () => {
    const data = { runId: 'r1', shard, fingerprint: '' } as never;
    expect(invalid(() => checkShardInRun(data, run() as never, 'j'))).toBe('valid');
    const outside = { runId: 'r1', shard: { ...shard, uri: '/etc/passwd' }, fingerprint: '' } as never;
    expect(invalid(() => checkShardInRun(outside, run() as never, 'j'))).toBe(
      "invalid j: shard m-0-8 reads /etc/passwd, outside the run's input /data/in",
    );
    const climbing = {
      runId: 'r1',
      shard: { ...shard, uri: '/data/in/../secret.jsonl' },
      fingerprint: '',
    } as never;
    expect(invalid(() => checkShardInRun(climbing, run() as never, 'j'))).toMatch(/outside the run's input/);
    // A human shard must come from a human input, a data shard from the input.
    const human = {
      runId: 'r1',
      shard: { ...shard, uri: '/data/h/a.jsonl', human: true },
      fingerprint: '',
    } as never;
    expect(invalid(() => checkShardInRun(human, run({ human: ['/data/h'] }) as never, 'j'))).toBe('valid');
    expect(invalid(() => checkShardInRun(human, run() as never, 'j'))).toMatch(
      /outside the run's human inputs/,
    );
  });

  it('refuses a run record whose options are out of bounds or not options at all', () => {
    expect(invalid(() => checkRunRecord(run()))).toBe('valid');
    expect(invalid(() => checkRunRecord(run({ options: runOptions({ batchSize: 1e6 }) })))).toBe(
      'invalid run record r1: --batch-size must be an integer in [1, 4096]',
    );
    expect(invalid(() => checkRunRecord(run({ options: 'x' })))).toMatch(/run options must be an object/);
    expect(invalid(() => checkRunRecord(run({ output: '' })))).toBe(
      'invalid run record r1: output must be a location',
    );
  });

  it("accepts a stage result only inline or spilled to its own stage's file (never a file to read or delete)", () => {
    const own = spillUri('/data/out', 'r1', 'caption', 'm-0-8');
    expect(checkCarried({ inline: { pairs: [] } }, own, 'j')).toEqual({ inline: { pairs: [] } });
    expect(checkCarried({ spilled: own, bytes: 10 }, own, 'j')).toEqual({ spilled: own, bytes: 10 });
    expect(invalid(() => checkCarried({ spilled: '/etc/shadow', bytes: 1 }, own, 'j'))).toBe(
      `invalid j: a stage result must be inline or spilled to ${own} (got the string "/etc/shadow")`,
    );
    expect(invalid(() => checkCarried(null, own, 'j'))).toMatch(/got null/);
  });

  it('checks the locations, mode and ids of a produce job', () => {
    const ok = {
      input: 's3://b/in',
      output: 's3://b/out',
      mode: 'split',
      options: runOptions(),
      runPrefix: 'nightly',
    };
    expect(parseProduceJob(ok)).toBe(ok);
    expect(invalid(() => parseProduceJob({ ...ok, mode: 'rm -rf' }))).toBe(
      'invalid produce job: mode must be split or fused',
    );
    expect(invalid(() => parseProduceJob({ ...ok, runPrefix: '../x' }))).toMatch(
      /runPrefix and scheduleId must match/,
    );
  });
});
