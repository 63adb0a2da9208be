import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const BIOME = join(ROOT, 'node_modules', '.bin', 'biome');

/** biome lint with the repository's biome.json over a scratch tree of the given files. */
function lint(files: Record<string, string>): { code: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-layers-'));
  dirs.push(dir);
  copyFileSync(join(ROOT, 'biome.json'), join(dir, 'biome.json'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  const r = spawnSync(BIOME, ['lint', '--max-diagnostics=50', '.'], { cwd: dir, encoding: 'utf8' });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('the layer rule (biome.json overrides, docs/architecture.md)', () => {
  it('fails lint when an import climbs a tier', () => {
    const r = lint({
      'src/pipeline/stages.ts': 'export const stage = 1;\n',
      'src/io/probe.ts': "import { stage } from '../pipeline/stages.js';\n\nexport const probe = stage;\n",
    });
    expect(r.code).toBe(1);
    expect(r.output).toContain('lint/style/noRestrictedImports');
    expect(r.output).toContain('Layer rule: src/io/ is tier 1 and may import only core.');
  });

  it('fails lint when model/runtime imports model/convert, or a folder imports a same-tier sibling', () => {
    const r = lint({
      'src/model/convert/import.ts': 'export const x = 1;\n',
      'src/model/runtime/probe.ts': "import { x } from '../convert/import.js';\n\nexport const probe = x;\n",
      'src/filter/options.ts': 'export const y = 1;\n',
      'src/captioner/probe.ts': "import { y } from '../filter/options.js';\n\nexport const probe = y;\n",
    });
    expect(r.code).toBe(1);
    expect(r.output).toContain('src/model/runtime/ (tier 2) may import only core, io and the shared');
    expect(r.output).toContain('Layer rule: src/captioner/ is tier 3');
  });

  it('fails lint on an import cycle', () => {
    const r = lint({
      'src/queue/a.ts': "import { b } from './b.js';\n\nexport const a = () => b;\n",
      'src/queue/b.ts': "import { a } from './a.js';\n\nexport const b = () => a;\n",
    });
    expect(r.code).toBe(1);
    expect(r.output).toContain('lint/suspicious/noImportCycles');
  });

  it('passes imports that go down a tier', () => {
    const r = lint({
      'src/core/types.ts': 'export type T = number;\n',
      'src/io/ok.ts': "import type { T } from '../core/types.js';\n\nexport const ok: T = 1;\n",
      'src/dashboard/ok.ts': "import { ok } from '../io/ok.js';\n\nexport const fine = ok;\n",
    });
    expect(r.output).not.toContain('noRestrictedImports');
    expect(r.code).toBe(0);
  });
});
