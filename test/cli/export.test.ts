import { spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

it('export to a stdout whose reader stops early (| head) ends quietly with exit 0', async () => {
  const out = await mkdtemp(join(tmpdir(), 'capfilt-export-'));
  const record = { key: 'k', source: '/data/k.png', status: 'ok', texts: ['a kept caption long enough'] };
  await writeFile(join(out, 'part-s.jsonl'), `${JSON.stringify(record)}\n`.repeat(50_000));
  const shard = { id: 's', format: 'jsonl', uri: '/data/in.jsonl' };
  await writeFile(join(out, 'part-s.stats.json'), `${JSON.stringify({ shard })}\n`);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'export', '-i', out],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  child.stderr.on('data', (c) => {
    err += c;
  });
  child.stdout.once('data', () => child.stdout.destroy());
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  expect(err).toBe('');
  expect(code).toBe(0);
}, 30_000);
