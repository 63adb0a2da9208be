import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importTinyModels, type TinyModels } from '../helpers/models.js';
import { readOutputRecords as readRecords } from '../helpers/output.js';

const ROOT = join(import.meta.dirname, '../..');
const EXAMPLES = join(ROOT, 'examples');

function capfilt(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; out: string; err: string }>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c) => {
    out += c;
  });
  child.stderr?.on('data', (c) => {
    err += c;
  });
  const done = new Promise<{ code: number | null; signal: string | null; out: string; err: string }>(
    (resolve) => {
      child.on('close', (code, signal) => resolve({ code, signal, out, err }));
    },
  );
  return { child, done };
}

async function waitFor(pred: () => boolean, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('capfilt run (child process)', () => {
  let models: TinyModels;
  let manifest: string;
  const N = 24;

  beforeAll(async () => {
    models = await importTinyModels();
    const dir = await mkdtemp(join(tmpdir(), 'capfilt-cli-'));
    const rows = (await readFile(join(EXAMPLES, 'jsonl/captions.jsonl'), 'utf8')).trim().split('\n');
    const lines: string[] = [];
    for (let i = 0; i < N; i++) {
      const row = JSON.parse(rows[i % rows.length]);
      lines.push(
        JSON.stringify({ key: `pair-${i}`, image: join(EXAMPLES, 'jsonl', row.image), caption: row.caption }),
      );
    }
    manifest = join(dir, 'pairs.jsonl');
    await writeFile(manifest, `${lines.join('\n')}\n`);
  });
  afterAll(() => models?.dispose());

  const args = (out: string) => [
    'run',
    '--input',
    manifest,
    '--output',
    out,
    '--captioner',
    models.captioner,
    '--filter',
    models.filter,
    '--shard-size',
    '8',
    '--batch-size',
    '2',
    '--max-length',
    '14',
    '--min-length',
    '6',
    '--progress',
    'plain',
    // The manifest names the examples' images by absolute path, outside its own folder.
    '--allow-root',
    EXAMPLES,
  ];

  it('SIGKILL mid-shard, rerun: complete output, every pair exactly once', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-cli-out-'));
    const first = capfilt(args(out));
    // Kill once the second shard has written part of its data (to its temp file): mid-shard.
    const partial = () =>
      readdirSync(out).some((n) => {
        try {
          return n.startsWith('.part-pairs-8-16.jsonl') && statSync(join(out, n)).size > 0;
        } catch {
          return false;
        }
      });
    await waitFor(partial, 60_000).catch(async (err) => {
      first.child.kill('SIGKILL');
      const r = await first.done;
      throw new Error(`${err}: ${readdirSync(out).join(' ')}\n${r.err}`);
    });
    first.child.kill('SIGKILL');
    const killed = await first.done;
    expect(killed.signal).toBe('SIGKILL');
    const names = await readdir(out);
    expect(names).toContain('part-pairs-0-8.jsonl');
    expect(names).not.toContain('part-pairs-8-16.jsonl');
    expect(names).not.toContain('_summary.json');
    // No shard that lacks its marker is visible under its final name.
    for (const n of names.filter((x) => x.endsWith('.jsonl'))) {
      expect(names).toContain(n.replace(/\.jsonl$/, '.stats.json'));
    }

    const second = capfilt(args(out));
    const res = await second.done;
    expect(res.code, res.err).toBe(0);
    expect(res.err).toMatch(/already complete, skipping/);
    expect(res.out).toMatch(/done\. 24 pairs in 3 shards/);
    const recs = await readRecords(out);
    expect(recs.map((r) => r.key).sort()).toEqual(Array.from({ length: N }, (_, i) => `pair-${i}`).sort());
    const after = await readdir(out);
    expect(after.filter((n) => n.endsWith('.tmp'))).toEqual([]);
    expect(after).toContain('_summary.json');
  });

  it('SIGTERM stops cleanly with exit 130 and no partial shard; refilter and export work from the CLI', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-cli-term-'));
    const first = capfilt(args(out));
    await waitFor(() => existsSync(join(out, 'part-pairs-0-8.stats.json')), 120_000);
    first.child.kill('SIGTERM');
    const res = await first.done;
    expect(res.code, res.err).toBe(130);
    const names = await readdir(out);
    for (const n of names.filter((x) => x.endsWith('.jsonl')))
      expect(names).toContain(n.replace(/\.jsonl$/, '.stats.json'));
    expect(names.filter((n) => n.endsWith('.tmp'))).toEqual([]);

    const done = await capfilt(args(out)).done;
    expect(done.code, done.err).toBe(0);
    const re = await mkdtemp(join(tmpdir(), 'capfilt-cli-re-'));
    const refiltered = await capfilt(['refilter', '--input', out, '--output', re, '--threshold', '0.5']).done;
    expect(refiltered.code, refiltered.err).toBe(0);
    expect(await readRecords(re)).toEqual(await readRecords(out));
    const exported = join(re, 'blip.json');
    const ex = await capfilt(['export', '--input', out, '--format', 'blip', '--output', exported]).done;
    expect(ex.code, ex.err).toBe(0);
    const annotations = JSON.parse(await readFile(exported, 'utf8'));
    const kept = (await readRecords(out)).reduce((a, r) => a + r.texts.length, 0);
    expect(annotations).toHaveLength(kept);
    expect(Object.keys(annotations[0]).sort()).toEqual(['caption', 'image']);
  });
});
