import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');

it('docs/architecture.md names every module of src/ (one line per module, kept true)', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8');
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'src'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((f) => /\.(ts|lua)$/.test(f));
  expect(files.length).toBeGreaterThan(50);
  const named = (file: string) => doc.includes(`${basename(file)}\``) || doc.includes(`${file.slice(4)}\``);
  expect(files.filter((f) => !named(f))).toEqual([]);
});
