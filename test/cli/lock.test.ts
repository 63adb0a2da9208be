import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliProcess, spawnCli, waitFor } from '../../tools/cli-process.js';
import { EXAMPLES, examplePairLines } from '../helpers/examples.js';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { readOutputRecords as records } from '../helpers/output.js';

const PAIRS = 48;
/** The first of two concurrent runs reads this many: it must still run when the second starts. */
const LONG_PAIRS = 160;

describe('a local run locks its output (child processes)', () => {
  let models: TinyModels;
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-lock-'));
  const manifest = join(dir, 'pairs.jsonl');
  const long = join(dir, 'long.jsonl');
  const procs: CliProcess[] = [];

  beforeAll(async () => {
    models = await importTinyModels();
    const lines = examplePairLines(LONG_PAIRS);
    writeFileSync(manifest, `${lines.slice(0, PAIRS).join('\n')}\n`);
    writeFileSync(long, `${lines.join('\n')}\n`);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    models?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  const run = (out: string, captioner = models.captioner, input = manifest) => {
    const p = spawnCli([
      ...['run', '--input', input, '--output', out, '--captioner', captioner, '--filter', models.filter],
      ...['--shard-size', '16', '--batch-size', '2', '--progress', 'none', '--threads', '1'],
      // The manifest (in a temporary folder) names the examples' images.
      ...['--allow-root', EXAMPLES],
    ]);
    procs.push(p);
    return p;
  };
  const locked = (out: string) =>
    waitFor('the lock', async () => existsSync(join(out, '_capfilt.lock')), 60_000, 20);

  it('a second run on the same output is refused in one line; the first finishes every shard intact', async () => {
    const out = join(dir, 'out-two');
    const first = run(out, models.captioner, long);
    await locked(out);
    const second = run(out);
    expect(await second.exited, `${second.output()}\n---\n${first.output()}`).toBe(2);
    const lines = second.stderr().split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^capfilt: output ${out} is in use by another capfilt run \\(pid ${first.proc.pid} on ${hostname()}`,
      ),
    );
    expect(lines[0]).toMatch(/wait for it to finish or use another --output/);
    expect(await first.exited, first.output()).toBe(0);
    const keys = records(out).map((r) => r.key);
    expect(keys.sort()).toEqual(Array.from({ length: LONG_PAIRS }, (_, i) => `pair-${i}`).sort());
    expect(existsSync(join(out, '_summary.json'))).toBe(true);
    expect(existsSync(join(out, '_capfilt.lock'))).toBe(false);
  });

  it('the lock of a killed run is stale: the next run takes it over and completes', async () => {
    const out = join(dir, 'out-killed');
    const first = run(out);
    await locked(out);
    expect(await first.kill('SIGKILL')).toBe('SIGKILL');
    expect(existsSync(join(out, '_capfilt.lock'))).toBe(true);
    const second = run(out);
    expect(await second.exited, second.output()).toBe(0);
    expect(second.stderr()).toContain(
      `took over the lock of ${out} from pid ${first.proc.pid}, which is gone`,
    );
    expect(records(out)).toHaveLength(PAIRS);
  });

  it('a lock whose pid now belongs to another process is stale too (its start time differs)', async () => {
    const out = join(dir, 'out-reused');
    mkdirSync(out);
    // pid 1 lives, but it started at boot, not when this lock says its holder did.
    const lock = {
      pid: 1,
      host: hostname(),
      startTicks: 123_456_789,
      startedAt: new Date().toISOString(),
      command: 'run',
    };
    writeFileSync(join(out, '_capfilt.lock'), JSON.stringify(lock));
    const p = run(out);
    expect(await p.exited, p.output()).toBe(0);
    expect(p.stderr()).toContain('from pid 1, which is gone');
  });

  it('an output that cannot be written fails at once, before any model is read', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    // The models do not exist: reading one would fail with another message.
    const p = run(join(file, 'out'), join(dir, 'no-such-model'));
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toBe(
      `capfilt: output ${join(file, 'out')} is not writable (ENOTDIR); nothing was run\n`,
    );
  });
});
