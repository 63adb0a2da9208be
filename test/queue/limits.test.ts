import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidJobError, UsageError } from '../../src/core/errors.js';
import type { WorkerLimits } from '../../src/core/types.js';
import {
  checkRunInLimits,
  limitWarnings,
  type RunPlaces,
  resolveWorkerLimits,
} from '../../src/queue/limits.js';

// Real folders: local roots and locations are compared by their real paths.
const dir = realpathSync(mkdtempSync(join(tmpdir(), 'capfilt-limits-')));
const inside = join(dir, 'in');
const outside = join(dir, 'outside');
mkdirSync(join(inside, 'sub'), { recursive: true });
mkdirSync(outside);
writeFileSync(join(outside, 'm.jsonl'), '');
symlinkSync(outside, join(inside, 'link'));
symlinkSync(inside, join(dir, 'in-alias'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (over: Partial<RunPlaces>): RunPlaces => ({
  runId: 'r1',
  input: join(inside, 'm.jsonl'),
  output: join(dir, 'out'),
  ...over,
});

/** The refusal's message, or null when the run fits the limits. */
async function refusal(limits: WorkerLimits, over: Partial<RunPlaces>): Promise<string | null> {
  try {
    await checkRunInLimits(run(over), await resolveWorkerLimits(limits));
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidJobError);
    return (err as Error).message;
  }
}

const local = { readRoots: [inside], writeRoots: [join(dir, 'out')] };

describe('worker limits: local folders', () => {
  it('admits what lies under a root, by its real path', async () => {
    expect(await refusal(local, {})).toBeNull();
    expect(await refusal(local, { input: join(inside, 'sub', 'deeper', 'x.tar') })).toBeNull();
    expect(await refusal(local, { input: join(inside, '..data', 'x.jsonl') })).toBeNull();
    expect(await refusal(local, { input: `file://${inside}/m.jsonl` })).toBeNull();
    // A root that is a link is its target; a location spelled through the link too.
    expect(await refusal({ readRoots: [join(dir, 'in-alias')] }, { output: join(inside, 'o') })).toBeNull();
    expect(await refusal(local, { input: join(dir, 'in-alias', 'm.jsonl') })).toBeNull();
  });

  it('refuses `..`, a sibling sharing the prefix, and a link that leads out', async () => {
    expect(await refusal(local, { input: join(inside, '..', 'outside', 'm.jsonl') })).toBe(
      `run r1 is outside this worker's limits: its input ${join(inside, '..', 'outside', 'm.jsonl')} is not under --read-root (${inside})`,
    );
    expect(await refusal(local, { input: `${inside}-evil/m.jsonl` })).toMatch(/its input .*in-evil/);
    expect(await refusal(local, { input: join(inside, 'link', 'm.jsonl') })).toMatch(/its input .*link/);
    expect(await refusal(local, { human: [join(inside, 'h'), '/etc/passwd'] })).toMatch(
      /its human input \/etc\/passwd is not under --read-root/,
    );
  });

  it("holds the run's source roots and output to the limits", async () => {
    const sources = { localRoots: [inside, '/'], s3Buckets: [] };
    expect(await refusal(local, { sources })).toMatch(/its source root \/ is not under --read-root/);
    expect(await refusal(local, { output: join(dir, 'out', '..', 'victim') })).toMatch(
      /its output .*victim is not under --write-root \(.*out\)/,
    );
    expect(await refusal(local, { output: 's3://out/x' })).toMatch(/its output s3:\/\/out\/x/);
  });

  it('writes under the read roots when no write roots are given', async () => {
    expect(await refusal({ readRoots: [dir] }, {})).toBeNull();
    expect(await refusal({ readRoots: [inside] }, {})).toMatch(/its output .* --write-root \(/);
  });
});

describe('worker limits: S3 and http(s)', () => {
  const s3 = { readRoots: ['s3://lake/b'], writeRoots: ['s3://out/runs/'] };
  const place = { input: 's3://lake/b/m.jsonl', output: 's3://out/runs/r1' };

  it('keeps to the prefix: s3://lake/b admits s3://lake/b/… but not s3://lake/bc, s3://lakeb or `..`', async () => {
    expect(await refusal(s3, place)).toBeNull();
    expect(await refusal(s3, { ...place, input: 's3://lake/b' })).toBeNull();
    for (const input of [
      's3://lake/bc/m.jsonl',
      's3://lakeb/b/m.jsonl',
      's3://lake/b/../c/m.jsonl',
      's3://lake/',
    ]) {
      expect(await refusal(s3, { ...place, input })).toMatch(`its input ${input} is not under --read-root`);
    }
    expect(await refusal(s3, { ...place, output: 's3://out/runsX' })).toMatch(/its output s3:\/\/out\/runsX/);
  });

  it('admits a source bucket only under a root covering the whole bucket', async () => {
    const sources = { localRoots: [], s3Buckets: ['lake'] };
    expect(await refusal(s3, { ...place, sources })).toMatch(
      /its source bucket s3:\/\/lake\/ is not under --read-root \(s3:\/\/lake\/b\)/,
    );
    expect(await refusal({ ...s3, readRoots: ['s3://lake'] }, { ...place, sources })).toBeNull();
    expect(
      await refusal(
        { ...s3, readRoots: ['s3://lake'] },
        { ...place, sources: { ...sources, s3Buckets: ['lakeb'] } },
      ),
    ).toMatch(/source bucket s3:\/\/lakeb\//);
  });

  it('keeps http(s) inputs under their prefix, host and path', async () => {
    const http = { readRoots: ['https://data.example/sets/'], writeRoots: [dir] };
    expect(await refusal(http, { input: 'https://data.example/sets/a.jsonl' })).toBeNull();
    for (const input of [
      'https://data.example/setsX/a.jsonl',
      'https://data.example/sets/../private/a.jsonl',
      'https://data.example.evil/sets/a.jsonl',
      'http://data.example/sets/a.jsonl',
      'https://data.example@evil.test/sets/a.jsonl',
    ]) {
      expect(await refusal(http, { input })).toMatch(/its input .* is not under --read-root/);
    }
  });
});

describe('worker limits: unset, and entry validation', () => {
  it('unset limits admit anything, and say so once per limit', async () => {
    const open = await resolveWorkerLimits({});
    await expect(
      checkRunInLimits(
        run({ input: '/etc/passwd', output: '/', sources: { localRoots: ['/'], s3Buckets: ['x'] } }),
        open,
      ),
    ).resolves.toBeUndefined();
    expect(limitWarnings(open)).toEqual([
      expect.stringMatching(/^capfilt: warning: no --read-root: .* read wherever/),
      expect.stringMatching(/^capfilt: warning: no --write-root: .* write wherever/),
    ]);
    expect(limitWarnings(await resolveWorkerLimits({ readRoots: [dir] }))).toEqual([]);
    expect(limitWarnings(await resolveWorkerLimits({ writeRoots: [dir] }))).toHaveLength(1);
  });

  it('an empty list admits nothing', async () => {
    expect(await refusal({ readRoots: [] }, {})).toMatch(/its input .* is not under --read-root \(none\)/);
  });

  it('refuses roots that are not locations, naming the flag', async () => {
    const bad = async (limits: WorkerLimits) =>
      await resolveWorkerLimits(limits).then(
        () => 'accepted',
        (err: Error) => `${err.constructor.name}: ${err.message}`,
      );
    expect(await bad({ readRoots: ['s3://'] })).toMatch(
      /^UsageError: --read-root takes at most 64 locations/,
    );
    expect(await bad({ writeRoots: ['https://'] })).toMatch(/^UsageError: --write-root takes/);
    expect(await bad({ readRoots: Array(65).fill(dir) })).toMatch(/--read-root takes at most 64/);
    expect(await bad({ readRoots: [''] })).toMatch(/--read-root takes/);
    expect(await bad({ readRoots: ['http://[zz'] })).toBe(
      `${UsageError.name}: not a location a worker can be limited to: http://[zz`,
    );
  });
});

describe('worker limits: private network addresses', () => {
  it('a limited worker serves a run reaching private addresses only with its own --allow-private-network', async () => {
    expect(await refusal(local, { privateNetwork: true })).toBe(
      "run r1 is outside this worker's limits: it lets image URLs reach private addresses, which this worker allows only with --allow-private-network",
    );
    expect(await refusal({ ...local, privateNetwork: true }, { privateNetwork: true })).toBeNull();
    expect(await refusal(local, { privateNetwork: false })).toBeNull();
    // An unlimited worker serves any run (and warns at start).
    expect(await refusal({}, { privateNetwork: true })).toBeNull();
  });
});
