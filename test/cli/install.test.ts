import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The shell lines of a markdown text's code blocks, comments cut off. */
function shellLines(markdown: string): string[] {
  const blocks = [...markdown.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks.flatMap((b) => b.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim())).filter(Boolean);
}

function quickStart(): string[] {
  const section = README.slice(README.indexOf('## Quick start'));
  return shellLines(section.slice(0, section.indexOf('\n## ', 3)));
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A shell command line as a user types it, in `cwd`, with `env` added. */
function sh(line: string, cwd: string, env: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', line], { cwd, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the quick start as a new user runs it: capfilt is a command, from any folder', () => {
  const home = mkdtempSync(join(tmpdir(), 'capfilt-install-'));
  const prefix = join(home, 'npm-global');
  const data = join(home, 'my-data');
  // npm link installs into npm's global prefix: a private one here, as README tells users without root.
  const env = {
    npm_config_prefix: prefix,
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    PATH: `${join(prefix, 'bin')}${delimiter}${process.env.PATH}`,
  };
  let install: Result[] = [];

  beforeAll(async () => {
    const [first] = quickStart();
    const steps = first.split('&&').map((s) => s.trim());
    // `npm ci` already ran (it installed this test runner); the install steps run exactly as
    // written; the demo at the end runs below, from a data folder outside the repository.
    expect(steps[0]).toBe('npm ci');
    install = [];
    for (const step of steps.slice(1, -1)) install.push(await sh(step, ROOT, env));
    await sh(`mkdir -p ${data}`, home, env);
  });
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it('the first README command builds and links capfilt onto the PATH', () => {
    const [first] = quickStart();
    expect(first).toMatch(/npm run build/);
    expect(first).toMatch(/npm link/);
    for (const r of install) expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(join(prefix, 'bin'))).toContain('capfilt');
  });

  it('capfilt --help and the README demo run from a data folder outside the repository', async () => {
    const help = await sh('capfilt --help', data, env);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: capfilt /);

    const demoLine = quickStart()[0].split('&&').at(-1)?.trim();
    expect(demoLine).toBe('capfilt demo');
    const out = join(home, 'demo-out');
    const demo = await sh(`${demoLine} --output ${out}`, data, env);
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toContain(`demo output in ${out}`);
    const summary = JSON.parse(readFileSync(join(out, '_summary.json'), 'utf8'));
    expect(summary).toMatchObject({
      records: 18,
      shards: 3,
      status: { ok: 18, rejected: 0 },
      kept: { human: 2 },
    });
  });

  it('README spells the command one way: capfilt …', () => {
    const docs = [
      README,
      readFileSync(join(ROOT, 'docs/distributed.md'), 'utf8'),
      readFileSync(join(ROOT, 'examples/README.md'), 'utf8'),
    ].join('\n');
    expect(docs).not.toMatch(/npx capfilt|node dist\/cli\/main\.js|tsx src\/cli\/main\.ts|npm run demo/);
    const invocations = shellLines(README)
      .flatMap((l) => l.split('&&').map((s) => s.trim()))
      .filter((l) => /\bcapfilt\s/.test(l) && !/^docker/.test(l));
    expect(invocations.length).toBeGreaterThan(10);
    for (const line of invocations) expect(line).toMatch(/^(\(.*\)\s+)?([A-Z_]+=\S+\s+)*capfilt /);
  });
});
