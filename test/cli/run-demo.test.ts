import { spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

describe('capfilt demo (the README first command)', () => {
  it('converts the tiny models if needed and runs the bundled examples with the human pairs', async () => {
    const out = await mkdtemp(join(tmpdir(), 'capfilt-demo-'));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'demo', '--output', out],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(0);
    expect(stdout).toContain(`demo output in ${out}`);
    const summary = JSON.parse(await readFile(join(out, '_summary.json'), 'utf8'));
    expect(summary).toMatchObject({
      records: 18,
      shards: 3,
      status: { ok: 18, rejected: 0 },
      kept: { human: 2 },
    });
  });
});
