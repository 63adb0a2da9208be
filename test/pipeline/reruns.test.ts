import { copyFileSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/core/errors.js';
import { runOptions } from '../../src/core/options.js';
import type { RunOptions } from '../../src/core/types.js';
import { Storage } from '../../src/io/storage/storage.js';
import { blipAnnotations, refilter } from '../../src/pipeline/dataset.js';
import { type LocalRunParams, runLocal } from '../../src/pipeline/local-runner.js';
import { importTinyModels, loadTinyEngines, type TinyModels } from '../helpers/models.js';
import { readOutputRecords as records } from '../helpers/output.js';

const EXAMPLES = join(import.meta.dirname, '../../examples');
const JSONL = join(EXAMPLES, 'jsonl/captions.jsonl');
const HUMAN = [join(EXAMPLES, 'human/annotations.jsonl')];

function partNames(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.startsWith('part-'))
    .sort();
}

async function annotations(storage: Storage, out: string): Promise<number> {
  let n = 0;
  // An image root: tar members are copied out (BLIP annotations never name `<tar>#<member>`).
  const imageRoot = await mkdtemp(join(tmpdir(), 'capfilt-vis-root-'));
  for await (const _ of blipAnnotations(storage, out, { imageRoot })) n++;
  return n;
}

interface RecordView {
  deciding: Record<string, unknown>;
  inputFingerprint: string;
  shards: { shard: { id: string }; pairs: number | null; fingerprint: string }[];
  [k: string]: unknown;
}

/** The output's run record, as a reader of the folder sees it. */
function runRecord(out: string): RecordView | null {
  try {
    return JSON.parse(readFileSync(join(out, '_capfilt-run.json'), 'utf8'));
  } catch {
    return null;
  }
}

async function refusal(run: Promise<unknown>): Promise<string> {
  const err = await run.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UsageError);
  return (err as Error).message;
}

describe('an output folder records its run; a rerun never mixes two runs in it', () => {
  let models: TinyModels;
  let engines: Awaited<ReturnType<typeof loadTinyEngines>>;
  const storage = new Storage();
  let options: RunOptions;

  beforeAll(async () => {
    models = await importTinyModels();
    engines = await loadTinyEngines(models, 8);
    options = runOptions({
      input: { shardSize: 8 },
      batchSize: 8,
      decoding: { maxLength: 12, minLength: 5 },
    });
  });
  afterAll(async () => {
    await engines?.close();
    models?.dispose();
  });

  const run = (p: Partial<LocalRunParams> & { output: string }) =>
    runLocal({
      captionerDir: models.captioner,
      filterDir: models.filter,
      storage,
      options,
      progress: 'none',
      engines,
      log: () => {},
      input: JSONL,
      ...p,
    });

  it('records the deciding options, input fingerprint and shard plan', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-record-'));
    await run({ output: out, human: HUMAN });
    const record = runRecord(out);
    expect(record).toMatchObject({
      input: JSONL,
      human: HUMAN,
      models: { captioner: engines.captioner.modelId, filter: engines.filter.modelId },
      runId: null,
    });
    expect(record?.deciding).toMatchObject({ '--threshold': 0.5, '--shard-size': 8, '--seed': 0 });
    expect(record?.inputFingerprint).toMatch(/^[0-9a-f]{32}$/);
    expect(record?.shards.map((s) => [s.shard.id, s.pairs])).toEqual([
      ['captions-0-8', 8],
      ['captions-8-16', 8],
      ['human-annotations-0-2', 2],
    ]);
    // Every marker keeps the fingerprint of the input its records were made from.
    for (const s of record?.shards ?? []) {
      const marker = JSON.parse(readFileSync(join(out, `part-${s.shard.id}.stats.json`), 'utf8'));
      expect(marker.fingerprint).toBe(s.fingerprint);
    }
  });

  it('a rerun with --threshold 0.9 is refused, naming the difference and refilter; the output is untouched', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-thr-'));
    await run({ output: out });
    const before = readFileSync(join(out, 'part-captions-0-8.jsonl'));
    const strict = runOptions({ ...options, filter: { threshold: 0.9 } });
    const message = await refusal(run({ output: out, options: strict }));
    expect(message).toContain(`${out} holds another run`);
    expect(message).toContain('--threshold 0.5 there, 0.9 now');
    expect(message).toContain('--overwrite');
    expect(message).toContain(`capfilt refilter --input ${out} --output <new folder> --threshold 0.9`);
    expect(readFileSync(join(out, 'part-captions-0-8.jsonl')).equals(before)).toBe(true);
    expect(JSON.parse(readFileSync(join(out, '_summary.json'), 'utf8')).options.threshold).toBe(0.5);
    // The way out it names works: the stored scores re-decided into a new folder.
    const refiltered = await mkdtemp(join(tmpdir(), 'capfilt-thr-refilter-'));
    await refilter(storage, out, refiltered, { threshold: 0.9 });
    expect(records(refiltered).every((r) => r.options.threshold === 0.9)).toBe(true);
    expect(runRecord(refiltered)).toMatchObject({ refilteredFrom: out, input: out });
  });

  it('another --shard-size is refused; with --overwrite the old shards go: each pair once', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-size-'));
    await run({ output: out });
    const smaller = runOptions({ ...options, input: { shardSize: 4 } });
    expect(await refusal(run({ output: out, options: smaller }))).toContain('--shard-size 8 there, 4 now');
    expect(partNames(out)).toHaveLength(4);
    const r = await run({ output: out, options: smaller, overwrite: true });
    expect(r).toMatchObject({ shards: 4, processed: 4 });
    expect(partNames(out).filter((n) => n.endsWith('.jsonl'))).toEqual([
      'part-captions-0-4.jsonl',
      'part-captions-12-16.jsonl',
      'part-captions-4-8.jsonl',
      'part-captions-8-12.jsonl',
    ]);
    const recs = records(out);
    expect(recs).toHaveLength(16);
    expect(new Set(recs.map((x) => x.source)).size).toBe(16);
  });

  it('another input into the same folder is refused; export and refilter read only the recorded run', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-other-'));
    await run({ output: out });
    const wds = join(EXAMPLES, 'webdataset');
    const message = await refusal(run({ output: out, input: wds }));
    expect(message).toContain(`input ${JSONL} there, ${wds} now`);
    expect(message).not.toContain('refilter');
    // A stray part (left by hand, or by a tool) is not the recorded run's: export skips it.
    const kept = await annotations(storage, out);
    copyFileSync(join(out, 'part-captions-0-8.jsonl'), join(out, 'part-stray.jsonl'));
    copyFileSync(join(out, 'part-captions-0-8.stats.json'), join(out, 'part-stray.stats.json'));
    expect(await annotations(storage, out)).toBe(kept);
    const refiltered = await mkdtemp(join(tmpdir(), 'capfilt-other-refilter-'));
    expect(await refilter(storage, out, refiltered, { threshold: 0.5 })).toMatchObject({
      shards: 2,
      records: 16,
    });
  });

  it('demo, then demo --examples webdataset (both --overwrite): export gives exactly the kept texts of the summary', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-demo-twice-'));
    await run({ output: out, human: HUMAN, overwrite: true });
    const second = await run({
      output: out,
      input: join(EXAMPLES, 'webdataset'),
      human: HUMAN,
      overwrite: true,
    });
    expect(second.summary).not.toBeNull();
    const summary = JSON.parse(await readFile(join(out, '_summary.json'), 'utf8'));
    expect(records(out)).toHaveLength(summary.records);
    expect(summary.records).toBe(16 + 2);
    expect(await annotations(storage, out)).toBe(summary.kept.texts);
    expect(partNames(out).some((n) => n.includes('captions'))).toBe(false);
  });

  it('the same input changed: changed and new shards are redone, gone ones removed, the rest kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-changed-'));
    const input = join(dir, 'in');
    mkdirSync(input);
    const rows = readFileSync(JSONL, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .map((r) => JSON.stringify({ ...r, image: join(EXAMPLES, 'jsonl', r.image) }));
    const write = (name: string, from: number) =>
      writeFileSync(join(input, name), `${rows.slice(from, from + 4).join('\n')}\n`);
    write('a.jsonl', 0);
    write('b.jsonl', 4);
    write('d.jsonl', 8);
    const out = join(dir, 'out');
    const logs: string[] = [];
    expect(await run({ output: out, input })).toMatchObject({ processed: 3 });
    write('b.jsonl', 12);
    utimesSync(join(input, 'b.jsonl'), new Date(), new Date(Date.now() + 5_000));
    write('c.jsonl', 0);
    await rm(join(input, 'a.jsonl'));
    const again = await run({ output: out, input, log: (l) => logs.push(l) });
    expect(again).toMatchObject({ shards: 3, processed: 2, skipped: 1 });
    expect(logs.join('\n')).toMatch(
      /input changed since the recorded run: 1 shards added, 1 changed \(redone\), 1 gone \(their parts removed\)/,
    );
    expect(partNames(out).filter((n) => n.endsWith('.jsonl'))).toEqual([
      'part-b-0-4.jsonl',
      'part-c-0-4.jsonl',
      'part-d-0-4.jsonl',
    ]);
    const sources = [12, 0, 8].flatMap((from) => rows.slice(from, from + 4).map((r) => JSON.parse(r).image));
    expect(records(out).map((r) => r.source)).toEqual(sources);
    expect(await run({ output: out, input })).toMatchObject({ processed: 0, skipped: 3 });
  });

  it('an output of capfilt parts without a run record is refused until --overwrite', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-legacy-'));
    writeFileSync(join(out, 'part-old.jsonl'), '');
    writeFileSync(join(out, 'part-old.stats.json'), '{}');
    writeFileSync(join(out, 'notes.txt'), 'mine');
    expect(await refusal(run({ output: out }))).toMatch(/without a run record/);
    await run({ output: out, overwrite: true });
    expect(partNames(out)).not.toContain('part-old.jsonl');
    // Only capfilt's own files are removed.
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine');
  });
});
