import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOptions } from '../../src/core/options.js';
import { Storage } from '../../src/io/storage/storage.js';
import { checkpointFolder } from '../../src/output/checkpoint.js';
import { runLocal } from '../../src/pipeline/local-runner.js';
import { type CliProcess, spawnCli, waitFor } from '../../tools/cli-process.js';
import { EXAMPLES, examplePairLines, watchedCaptioner } from '../helpers/examples.js';
import { importTinyModels, loadTinyEngines, type TinyModels } from '../helpers/models.js';
import { readOutputRecords as records } from '../helpers/output.js';

const PAIRS = 40;
const BATCH = 2;
const SHARD = 'pairs-0-40';

/** Pairs the shard's checkpoint holds, from its pieces' names (<first>-<pairs>.jsonl). */
function checkpointed(out: string): number {
  const dir = checkpointFolder(out, SHARD);
  if (!existsSync(dir)) return 0;
  return readdirSync(dir)
    .map((n) => /^\d+-(\d+)\.jsonl$/.exec(n))
    .reduce((a, m) => a + (m ? Number(m[1]) : 0), 0);
}

describe('a shard interrupted mid-way resumes from its checkpoint (child processes)', () => {
  let models: TinyModels;
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-checkpoint-'));
  const manifest = join(dir, 'pairs.jsonl');
  const procs: CliProcess[] = [];

  beforeAll(async () => {
    models = await importTinyModels();
    writeFileSync(manifest, `${examplePairLines(PAIRS).join('\n')}\n`);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    models?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  const args = (out: string) => [
    ...[
      'run',
      '--input',
      manifest,
      '--output',
      out,
      '--captioner',
      models.captioner,
      '--filter',
      models.filter,
    ],
    ...['--shard-size', String(PAIRS), '--batch-size', String(BATCH), '--progress', 'none', '--threads', '1'],
    ...['--allow-root', EXAMPLES],
  ];
  const start = (out: string) => {
    const p = spawnCli(args(out));
    procs.push(p);
    return p;
  };
  /** Until the shard has at least `pairs` checkpointed (and is still running). */
  const saved = (out: string, pairs: number) =>
    waitFor('checkpointed batches', async () => checkpointed(out) >= pairs, 120_000, 20);

  it('killed mid-shard: the rerun calls the models only for the pairs after the checkpoint; each pair once', async () => {
    const out = join(dir, 'out-killed');
    const first = start(out);
    await saved(out, 3 * BATCH);
    expect(await first.kill('SIGKILL')).toBe('SIGKILL');
    const resumable = checkpointed(out);
    expect(resumable).toBeGreaterThanOrEqual(3 * BATCH);
    expect(resumable).toBeLessThan(PAIRS);
    expect(readdirSync(out).filter((n) => n.startsWith('part-'))).toEqual([]);

    // The rerun, in this process, counting the pairs that reach the captioner.
    const engines = await loadTinyEngines(models, BATCH);
    let captioned = 0;
    const counting = watchedCaptioner(engines, (images) => {
      captioned += images;
    });
    const storage = new Storage();
    try {
      const options = runOptions({
        input: { shardSize: PAIRS },
        batchSize: BATCH,
        sources: { localRoots: [EXAMPLES, dir] },
      });
      const r = await runLocal({
        input: manifest,
        output: out,
        captionerDir: models.captioner,
        filterDir: models.filter,
        options,
        storage,
        progress: 'none',
        engines: counting,
        log: () => {},
      });
      expect(r).toMatchObject({ processed: 1, interrupted: false, failed: [] });
    } finally {
      storage.close();
      await engines.close();
    }
    expect(captioned).toBe(PAIRS - resumable);
    const keys = records(out).map((r) => r.key);
    expect(keys).toHaveLength(PAIRS);
    expect(new Set(keys).size).toBe(PAIRS);
    // The pieces went once the shard's data file and marker were written, and their folders with them.
    expect(checkpointed(out)).toBe(0);
    expect(existsSync(join(out, '_capfilt-work', 'partial'))).toBe(false);
  });

  it('the first Ctrl-C says how much will be redone; the rerun finishes from the checkpoint', async () => {
    const out = join(dir, 'out-int');
    const first = start(out);
    await saved(out, 2 * BATCH);
    first.proc.kill('SIGINT');
    expect(await first.exited).toBe(130);
    expect(first.stderr()).toMatch(
      new RegExp(
        `SIGINT received, stopping once the batch in progress is checkpointed; again to quit now \\(shard ${SHARD} has \\d+ pairs checkpointed; up to ${BATCH} pairs \\(the batch in progress\\) will be redone by the next run\\)`,
      ),
    );
    // Stopped after the batch in progress was saved: nothing it did is lost.
    const kept = checkpointed(out);
    expect(kept).toBeGreaterThanOrEqual(2 * BATCH);
    const second = start(out);
    expect(await second.exited, second.output()).toBe(0);
    expect(
      records(out)
        .map((r) => r.key)
        .sort(),
    ).toEqual(Array.from({ length: PAIRS }, (_, i) => `pair-${i}`).sort());
  });
});
